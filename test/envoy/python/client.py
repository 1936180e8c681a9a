"""An Envoy rate limit (RLS v3) client in Python, calling sluice as Envoy would call
envoyproxy/ratelimit.

Usage: client.py ADDRESS STUBS_DIR

STUBS_DIR holds envoy/service/ratelimit/v3/rls_pb2.py and rls_pb2_grpc.py (and the pb2 modules of
their imports), generated from the repo's proto/envoy with protoc and grpc_python_plugin. Prints
one JSON object per line, one per step, for the test that runs it to assert on. Any exception is
printed as a JSON line too, with exit code 1.
"""

import json
import sys
import traceback


def emit(obj):
    print(json.dumps(obj), flush=True)


def main(address, stubs_dir):
    sys.path.insert(0, stubs_dir)
    import grpc
    from google.protobuf import json_format, wrappers_pb2
    from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2 as common
    from envoy.service.ratelimit.v3 import rls_pb2 as rls
    from envoy.service.ratelimit.v3 import rls_pb2_grpc as rls_grpc
    from envoy.type.v3 import ratelimit_unit_pb2 as units

    emit({"step": "versions", "python": sys.version.split()[0], "grpc": grpc.__version__})
    timeout = 10

    def descriptor(*pairs, **extra):
        entries = [common.RateLimitDescriptor.Entry(key=k, value=v) for k, v in zip(pairs[::2], pairs[1::2])]
        return common.RateLimitDescriptor(entries=entries, **extra)

    def answer(step, res):
        statuses = []
        for s in res.statuses:
            statuses.append({
                "code": rls.RateLimitResponse.Code.Name(s.code),
                "current_limit": None if not s.HasField("current_limit") else {
                    "name": s.current_limit.name,
                    "requests_per_unit": s.current_limit.requests_per_unit,
                    "unit": rls.RateLimitResponse.RateLimit.Unit.Name(s.current_limit.unit),
                },
                "limit_remaining": s.limit_remaining,
                "reset_seconds": s.duration_until_reset.seconds if s.HasField("duration_until_reset") else None,
            })
        emit({
            "step": step,
            "overall_code": rls.RateLimitResponse.Code.Name(res.overall_code),
            "statuses": statuses,
            "headers": {h.key: h.value for h in res.response_headers_to_add},
            "dynamic_metadata": json_format.MessageToDict(res.dynamic_metadata) if res.HasField("dynamic_metadata") else None,
        })
        return res

    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=timeout)
        stub = rls_grpc.RateLimitServiceStub(channel)

        def call(step, domain, descriptors, hits_addend=0):
            req = rls.RateLimitRequest(domain=domain, descriptors=descriptors, hits_addend=hits_addend)
            return answer(step, stub.ShouldRateLimit(req, timeout=timeout))

        def failing(step, domain, descriptors):
            try:
                stub.ShouldRateLimit(rls.RateLimitRequest(domain=domain, descriptors=descriptors), timeout=timeout)
                emit({"step": step, "code": "OK"})
            except grpc.RpcError as err:
                emit({"step": step, "code": err.code().name, "details": err.details()})

        call("first", "py", [descriptor("tenant", "acme"), descriptor("path", "/health")])
        call("second", "py", [descriptor("tenant", "acme")], hits_addend=2)
        call("over", "py", [descriptor("tenant", "acme"), descriptor("tenant", "globex")])
        # A descriptor's own hits_addend (a UInt64Value): 0 only checks.
        call("check", "py", [descriptor("tenant", "globex", hits_addend=wrappers_pb2.UInt64Value(value=0))])
        call("override", "py", [descriptor("tenant", "initech", limit=common.RateLimitDescriptor.RateLimitOverride(
            requests_per_unit=7, unit=units.HOUR))])
        call("unknown_domain", "nope", [descriptor("tenant", "acme")])
        failing("empty_domain", "", [descriptor("tenant", "acme")])
        failing("no_descriptors", "py", [])

        # A * in the middle of a value, sharing one budget (share_threshold).
        call("wildcard_first", "py", [descriptor("route", "/api/users/v1")])
        call("wildcard_shared", "py", [descriptor("route", "/apiv1")])
        call("wildcard_miss", "py", [descriptor("route", "/api/v2")])
        # Descriptors in quota mode, with metadata returned as dynamic metadata.
        call("quota_both_pass", "py", [descriptor("plan", "free"), descriptor("plan", "trial")])
        call("quota_one_over", "py", [descriptor("plan", "free"), descriptor("plan", "trial")])

        # grpc.health.v1 for envoyproxy/ratelimit's name, with hand-encoded messages:
        # HealthCheckRequest { string service = 1 }, HealthCheckResponse { ServingStatus status = 1 }.
        service = b"ratelimit"
        check = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=None, response_deserializer=None)
        reply = check(bytes([0x0A, len(service)]) + service, timeout=timeout)
        statuses = {1: "SERVING", 2: "NOT_SERVING"}
        emit({"step": "health_ratelimit", "status": statuses.get(reply[1]) if reply[:1] == b"\x08" else "UNKNOWN"})


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2])
    except Exception as err:  # reported to the test as data, not lost in a traceback on stderr
        emit({"step": "exception", "error": repr(err), "traceback": traceback.format_exc()})
        sys.exit(1)
