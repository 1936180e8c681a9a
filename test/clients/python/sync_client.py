"""sluice_client.Client against a real sidecar. Arguments: the sidecar's address, an address
nothing listens on, and a directory of raw stubs generated from proto/."""
import os
import socket
import sys
import time
from datetime import timedelta

import grpc

from sluice_client import Client, Denied, SluiceError
from steps import emit, failure_fields, installed, permit_fields

address, unreachable, raw_stubs = sys.argv[1:4]
TENANT = "sync"
# Generous: the machine is slow and shared; what is timed here is the sidecar's waiting.
client = Client(address, timeout=30)


def outcome(call):
    try:
        with call() as permit:
            inside = permit_fields(permit)
        return {**inside, "released_after": permit.released}
    except SluiceError as err:
        return failure_fields(err)


emit("installed", **installed(), grpc=grpc.__version__)

# Grant and denial: one unit every 10 s.
emit("grant", **outcome(lambda: client.acquire("bucket", tenant=TENANT)))
emit("denied", **outcome(lambda: client.acquire("bucket", tenant=TENANT)))
emit("never", **outcome(lambda: client.acquire("bucket", cost=5, tenant=TENANT)))

# Waiting in the sidecar, past the client's own timeout: the deadline leaves room for max_wait.
short = Client(address, timeout=0.5)
emit("slow_first", **outcome(lambda: short.acquire("slow", tenant=TENANT)))
started = time.monotonic()
emit("waited", **outcome(lambda: short.acquire("slow", max_wait=timedelta(seconds=10), tenant=TENANT)), elapsed=time.monotonic() - started)
emit("wait_timeout", **outcome(lambda: short.acquire("slow", max_wait=0.2, tenant=TENANT)))
short.close()

# A concurrency slot, freed by leaving the block.
with client.acquire("slot", tenant=TENANT) as held:
    emit("slot_held", **permit_fields(held))
    emit("slot_busy", **outcome(lambda: client.acquire("slot", tenant=TENANT)))
emit("slot_left", released=held.released, release_again=held.release())
again = client.acquire("slot", tenant=TENANT)
emit("slot_again", **permit_fields(again), release=again.release(), release_again=again.release())
try:
    with client.acquire("slot", tenant=TENANT):
        raise RuntimeError("the work failed")
except RuntimeError as err:
    emit("slot_raised", error=str(err), **outcome(lambda: client.acquire("slot", tenant=TENANT)))

# Settling: 600 acquired, 100 used.
with client.acquire("tokens", cost=600, tenant=TENANT) as permit:
    emit("settle_acquired", **permit_fields(permit))
    emit("settled", settled=permit.settle(100), released=permit.released, settle_again=permit.settle(5), release_again=permit.release())
emit("after_settle", **outcome(lambda: client.acquire("tokens", tenant=TENANT)))

# No sidecar at the address, under each on_unavailable.
for policy in ("raise", "open", "closed"):
    with Client(unreachable, on_unavailable=policy, timeout=10) as nowhere:
        emit(f"unreachable_{policy}", **outcome(lambda: nowhere.acquire("bucket", tenant=TENANT)))

# A listener that never answers: the call's deadline passes.
silent = socket.socket()
silent.bind(("127.0.0.1", 0))
silent.listen()
with Client(f"127.0.0.1:{silent.getsockname()[1]}", on_unavailable="closed", timeout=0.5) as mute:
    emit("deadline_closed", **outcome(lambda: mute.acquire("bucket", tenant=TENANT)))
silent.close()

# Bad requests raise whatever on_unavailable says.
with Client(address, on_unavailable="open", timeout=30) as lenient:
    emit("unknown_resource", **outcome(lambda: lenient.acquire("nope", tenant=TENANT)))
    emit("missing_key", **outcome(lambda: lenient.acquire("bucket", user="x")))

# Arguments the client refuses itself.
refused = {}
for name, make in {
    "on_unavailable": lambda: Client(address, on_unavailable="maybe"),
    "timeout": lambda: Client(address, timeout=0),
    "max_wait": lambda: client.acquire("bucket", max_wait=-1, tenant=TENANT),
}.items():
    try:
        make()
    except ValueError as err:
        refused[name] = str(err)
emit("bad_arguments", **refused)

# The target from $SLUICE_ADDR.
os.environ["SLUICE_ADDR"] = address
with Client() as from_env:
    emit("env_target", target=from_env.target, **outcome(lambda: from_env.acquire("slot", tenant=TENANT)))

# Raw stubs of the same proto in the same process: protobuf's pool accepts the identical file.
sys.path.insert(0, raw_stubs)
from sluice.v1 import sluice_pb2, sluice_pb2_grpc  # noqa: E402

with grpc.insecure_channel(address) as channel:
    raw = sluice_pb2_grpc.RateLimiterStub(channel).Acquire(sluice_pb2.AcquireRequest(resource="slot", descriptors={"tenant": "raw"}), timeout=30)
emit("raw_stubs", granted=raw.granted)
client.close()
