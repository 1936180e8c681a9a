"""A sluice.v1 client in Python, as a service in another language would write one.

Usage: client.py ADDRESS STUBS_DIR

STUBS_DIR holds sluice/v1/sluice_pb2.py and sluice_pb2_grpc.py, generated from the repo's proto
with protoc and grpc_python_plugin. Prints one JSON object per line, one per step, for the test
that runs it to assert on. Any exception is printed as a JSON line too, with exit code 1.
"""

import json
import sys
import traceback


def duration_ms(message, field):
    if not message.HasField(field):
        return None
    d = getattr(message, field)
    return d.seconds * 1000 + d.nanos / 1e6


def acquire_result(pb, step, res):
    return {
        "step": step,
        "granted": res.granted,
        "permit_id": res.permit_id,
        "retry_after_ms": duration_ms(res, "retry_after"),
        "remaining": res.remaining,
        "limit": res.limit,
        "reset_after_ms": duration_ms(res, "reset_after"),
        "limit_name": res.limit_name,
        "decided_by": pb.DecidedBy.Name(res.decided_by),
        "waited_ms": duration_ms(res, "waited"),
        "request_id": res.request_id,
        "reason": res.reason,
    }


def emit(obj):
    print(json.dumps(obj), flush=True)


def main(address, stubs_dir):
    sys.path.insert(0, stubs_dir)
    import grpc
    from sluice.v1 import sluice_pb2 as pb
    from sluice.v1 import sluice_pb2_grpc as pb_grpc
    from google.protobuf.duration_pb2 import Duration

    emit({"step": "versions", "python": sys.version.split()[0], "grpc": grpc.__version__})
    timeout = 10
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=timeout)
        stub = pb_grpc.RateLimiterStub(channel)

        def acquire(step, **fields):
            res = stub.Acquire(pb.AcquireRequest(**fields), timeout=timeout)
            emit(acquire_result(pb, step, res))
            return res

        def failing(step, call):
            try:
                res = call()
                emit({"step": step, "code": "OK", "response": str(res)})
            except grpc.RpcError as err:
                emit({"step": step, "code": err.code().name, "details": err.details()})

        req = {"resource": "py", "descriptors": {"tenant": "acme"}}
        first = acquire("acquire1", request_id="py-1", **req)
        acquire("acquire2", request_id="py-2", **req)
        released = stub.Release(pb.ReleaseRequest(permit_id=first.permit_id), timeout=timeout)
        emit({"step": "release1", "released": released.released})
        again = stub.Release(pb.ReleaseRequest(permit_id=first.permit_id), timeout=timeout)
        emit({"step": "release_again", "released": again.released})
        third = acquire("acquire3", request_id="py-3", **req)
        settled = stub.Release(pb.ReleaseRequest(permit_id=third.permit_id, actual_cost=1), timeout=timeout)
        emit({"step": "release3_settled", "released": settled.released})

        # Errors come back as gRPC statuses with the field named.
        failing("unknown_resource", lambda: stub.Acquire(pb.AcquireRequest(resource="nope", descriptors={"tenant": "acme"}), timeout=timeout))
        failing("missing_key", lambda: stub.Acquire(pb.AcquireRequest(resource="py"), timeout=timeout))
        failing("huge_cost", lambda: stub.Acquire(pb.AcquireRequest(cost=2**64 - 1, **req), timeout=timeout))
        failing("garbage_permit", lambda: stub.Release(pb.ReleaseRequest(permit_id="garbage"), timeout=timeout))

        # Waiting: one unit a second, spent by the first; the second waits for the next unit; the
        # third may wait 50 ms only, and the next unit is a second away.
        waits = {"resource": "pywait", "descriptors": {"tenant": "acme"}}
        acquire("wait_first", **waits)
        acquire("wait_granted", max_wait=Duration(seconds=5), **waits)
        acquire("wait_timeout", max_wait=Duration(nanos=50_000_000), **waits)

        # A stream: answers are matched by request_id.
        requests = [pb.AcquireRequest(resource="py", descriptors={"tenant": "stream-%d" % i}, request_id="s-%d" % i) for i in range(3)]
        answers = [acquire_result(pb, "stream", res) for res in stub.AcquireStream(iter(requests), timeout=timeout)]
        emit({"step": "stream", "answers": answers})


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2])
    except Exception as err:  # reported to the test as data, not lost in a traceback on stderr
        emit({"step": "exception", "error": repr(err), "traceback": traceback.format_exc()})
        sys.exit(1)
