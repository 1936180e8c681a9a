"""What the client scripts share: each prints one JSON object per line, named by its `step`."""
import asyncio
import json
import os
import re
import time
import urllib.request

import sluice_client
from sluice_client import CallFailed, Denied

PERMIT_FIELDS = ("granted", "permit_id", "remaining", "limit", "limit_name", "decided_by", "waited", "reason", "released")


def emit(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def permit_fields(permit):
    return {"outcome": type(permit).__name__, **{name: getattr(permit, name) for name in PERMIT_FIELDS}}


def failure_fields(err):
    """A raised Denied or CallFailed, as the test asserts on it."""
    if isinstance(err, Denied):
        return {
            "outcome": "Denied",
            "retry_after": err.retry_after,
            "limit_name": err.limit_name,
            "reason": err.reason,
            "decided_by": err.decided_by,
            "waited": err.waited,
        }
    if isinstance(err, CallFailed):
        return {"outcome": type(err).__name__, "code": err.code.name, "details": err.details, "message": str(err)}
    raise err


def metric(admin, name, *labels):
    """The sum of the sidecar's series of `name` whose labels contain each of `labels`."""
    text = urllib.request.urlopen(f"http://{admin}/metrics", timeout=10).read().decode()
    total = 0.0
    for match in re.finditer(rf"^{name}(?:\{{([^}}]*)\}})? (\S+)$", text, re.M):
        if all(label in (match.group(1) or "") for label in labels):
            total += float(match.group(2))
    return total


def until(what, check, timeout=10.0):
    """Polls `check` every 20 ms until it is true; fails after `timeout` seconds."""
    give_up = time.monotonic() + timeout
    while not check():
        if time.monotonic() > give_up:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.02)


async def until_async(what, check, timeout=10.0):
    """As `until`, letting the event loop run between looks."""
    give_up = time.monotonic() + timeout
    while not check():
        if time.monotonic() > give_up:
            raise TimeoutError(f"waited {timeout} s for {what}")
        await asyncio.sleep(0.02)


def installed():
    """Where sluice_client was imported from, and whether its type information came with it."""
    package = os.path.dirname(sluice_client.__file__)
    return {
        "module": sluice_client.__file__,
        "typed": [name for name in ("py.typed", "v1/sluice_pb2.pyi") if os.path.isfile(os.path.join(package, name))],
    }
