"""sluice_client: ask a sluice sidecar for permission before doing something rate limited.

::

    from sluice_client import Client, Denied

    client = Client()  # $SLUICE_ADDR, else 127.0.0.1:50051
    try:
        with client.acquire("openai", cost=1200, max_wait=2.0, tenant="acme") as permit:
            used = call_the_model()
            permit.settle(used)
    except Denied as denied:
        print("try again in", denied.retry_after, "s:", denied.reason)

``AsyncClient`` is the same for asyncio. The generated messages and stub are in
``sluice_client.v1``.
"""
from ._permit import AsyncPermit, Permit
from ._wire import OnUnavailable, Seconds
from .aio import AsyncClient
from .client import Client
from .errors import CallFailed, Denied, SidecarError, SluiceError, Unavailable

__all__ = [
    "AsyncClient",
    "AsyncPermit",
    "CallFailed",
    "Client",
    "Denied",
    "OnUnavailable",
    "Permit",
    "Seconds",
    "SidecarError",
    "SluiceError",
    "Unavailable",
]
