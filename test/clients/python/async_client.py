"""sluice_client.AsyncClient against a real sidecar. Arguments: the sidecar's address, its admin
address (for /metrics), and an address nothing listens on."""
import asyncio
import sys
import time

from sluice_client import AsyncClient, SluiceError
from steps import emit, failure_fields, installed, metric, permit_fields, until_async

address, admin, unreachable = sys.argv[1:4]
TENANT = "async"


async def outcome(call):
    try:
        async with await call() as permit:
            inside = permit_fields(permit)
        return {**inside, "released_after": permit.released}
    except SluiceError as err:
        return failure_fields(err)


def waiters(resource):
    return metric(admin, "sluice_waiters", f'resource="{resource}"')


async def main():
    emit("installed", **installed())
    # Generous: the machine is slow and shared; what is timed here is the sidecar's waiting.
    client = AsyncClient(address, timeout=30)

    emit("grant", **await outcome(lambda: client.acquire("bucket", tenant=TENANT)))
    emit("denied", **await outcome(lambda: client.acquire("bucket", tenant=TENANT)))
    emit("never", **await outcome(lambda: client.acquire("bucket", cost=5, tenant=TENANT)))

    async with AsyncClient(address, timeout=0.5) as short:
        emit("slow_first", **await outcome(lambda: short.acquire("slow", tenant=TENANT)))
        started = time.monotonic()
        emit("waited", **await outcome(lambda: short.acquire("slow", max_wait=10, tenant=TENANT)), elapsed=time.monotonic() - started)
        emit("wait_timeout", **await outcome(lambda: short.acquire("slow", max_wait=0.2, tenant=TENANT)))

    async with await client.acquire("slot", tenant=TENANT) as held:
        emit("slot_held", **permit_fields(held))
        emit("slot_busy", **await outcome(lambda: client.acquire("slot", tenant=TENANT)))
    emit("slot_left", released=held.released, release_again=await held.release())
    again = await client.acquire("slot", tenant=TENANT)
    emit("slot_again", **permit_fields(again), release=await again.release(), release_again=await again.release())

    async with await client.acquire("tokens", cost=600, tenant=TENANT) as permit:
        emit("settle_acquired", **permit_fields(permit))
        settled = await permit.settle(100)
        emit("settled", settled=settled, released=permit.released, settle_again=await permit.settle(5), release_again=await permit.release())
    emit("after_settle", **await outcome(lambda: client.acquire("tokens", tenant=TENANT)))

    for policy in ("raise", "open", "closed"):
        async with AsyncClient(unreachable, on_unavailable=policy, timeout=10) as nowhere:
            emit(f"unreachable_{policy}", **await outcome(lambda: nowhere.acquire("bucket", tenant=TENANT)))

    # A full line is the sidecar's answer, raised whatever on_unavailable says.
    async with AsyncClient(address, on_unavailable="open", timeout=30) as lenient:
        async with await lenient.acquire("capped", tenant=TENANT):
            first = asyncio.ensure_future(lenient.acquire("capped", max_wait=30, tenant=TENANT))
            await until_async("a waiter in capped", lambda: waiters("capped") == 1)
            emit("line_full", **await outcome(lambda: lenient.acquire("capped", max_wait=30, tenant=TENANT)))
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
        emit("unknown_resource", **await outcome(lambda: lenient.acquire("nope", tenant=TENANT)))

    # Cancelling a waiting acquire: A holds the slot, B waits for it and is cancelled, A leaves;
    # C, which does not wait, is granted: B is not in line and holds nothing.
    async with await client.acquire("cancel", tenant=TENANT) as a:
        emit("cancel_a", **permit_fields(a))
        b = asyncio.ensure_future(client.acquire("cancel", max_wait=10, tenant=TENANT))
        await until_async("B waiting", lambda: waiters("cancel") == 1)
        b.cancel()
        try:
            await b
            emit("cancel_b", outcome="not cancelled")
        except asyncio.CancelledError:
            emit("cancel_b", outcome="CancelledError", cancelled=b.cancelled())
        await until_async("B gone from the sidecar", lambda: waiters("cancel") == 0)
    emit("cancel_c", **await outcome(lambda: client.acquire("cancel", tenant=TENANT)))
    # The day's 10: A and C took one each; B took none.
    rest = [await outcome(lambda: client.acquire("cancel", tenant=TENANT)) for _ in range(9)]
    emit("cancel_rest", granted=sum(1 for each in rest if each["outcome"] == "AsyncPermit"), last=rest[-1])

    await client.close()


asyncio.run(main())
