"""An Envoy rate limit (RLS v3) client in Python calling sluice over mutual TLS, as Envoy would
call envoyproxy/ratelimit with GRPC_SERVER_USE_TLS and GRPC_CLIENT_TLS_CACERT.

Usage: tls_client.py ADDRESS STUBS_DIR CA_FILE CERT_FILE KEY_FILE OTHER_CERT_FILE OTHER_KEY_FILE

CA_FILE signed the sidecar's certificate (which names localhost); CERT_FILE and KEY_FILE are a
client certificate the sidecar accepts, OTHER_CERT_FILE and OTHER_KEY_FILE one whose SAN it does
not. STUBS_DIR is as for client.py. Prints one JSON object per line, one per step; any exception
is printed as a JSON line too, with exit code 1.
"""

import json
import sys
import traceback


def emit(obj):
    print(json.dumps(obj), flush=True)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def main(address, stubs_dir, ca_file, cert_file, key_file, other_cert_file, other_key_file):
    sys.path.insert(0, stubs_dir)
    import grpc
    from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2 as common
    from envoy.service.ratelimit.v3 import rls_pb2 as rls
    from envoy.service.ratelimit.v3 import rls_pb2_grpc as rls_grpc

    timeout = 10
    # The sidecar is reached at an IP address; its certificate names localhost.
    options = (("grpc.ssl_target_name_override", "localhost"),)
    request = rls.RateLimitRequest(
        domain="py", descriptors=[common.RateLimitDescriptor(entries=[common.RateLimitDescriptor.Entry(key="tenant", value="tls")])]
    )

    def channel(cert=None, key=None):
        creds = grpc.ssl_channel_credentials(root_certificates=read(ca_file), private_key=key and read(key), certificate_chain=cert and read(cert))
        return grpc.secure_channel(address, creds, options)

    def attempt(step, cert=None, key=None):
        with channel(cert, key) as ch:
            try:
                res = rls_grpc.RateLimitServiceStub(ch).ShouldRateLimit(request, timeout=timeout)
                emit({"step": step, "overall_code": rls.RateLimitResponse.Code.Name(res.overall_code), "limit_remaining": res.statuses[0].limit_remaining})
            except grpc.RpcError as err:
                emit({"step": step, "code": err.code().name, "details": err.details()})

    attempt("mtls", cert_file, key_file)
    attempt("wrong_san", other_cert_file, other_key_file)
    attempt("no_cert")

    with channel(cert_file, key_file) as ch:
        # HealthCheckRequest { string service = 1 } for "", HealthCheckResponse { ServingStatus status = 1 }.
        reply = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=None, response_deserializer=None)(b"", timeout=timeout)
        emit({"step": "health", "status": {1: "SERVING", 2: "NOT_SERVING"}.get(reply[1]) if reply[:1] == b"\x08" else "UNKNOWN"})


if __name__ == "__main__":
    try:
        main(*sys.argv[1:8])
    except Exception as err:  # reported to the test as data, not lost in a traceback on stderr
        emit({"step": "exception", "error": repr(err), "traceback": traceback.format_exc()})
        sys.exit(1)
