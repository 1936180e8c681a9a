"""The client for asyncio code (grpc.aio)."""
from __future__ import annotations

from types import TracebackType
from typing import Optional, Type

import grpc
import grpc.aio

from ._permit import AsyncPermit
from ._wire import (
    CHANNEL_OPTIONS,
    DEFAULT_TIMEOUT,
    OnUnavailable,
    Seconds,
    acquire_request,
    answer_of,
    checked_policy,
    release_request,
    seconds,
    target_of,
    timeout_of,
    unanswered_acquire,
    unanswered_release,
)
from .v1 import sluice_pb2, sluice_pb2_grpc


class AsyncClient:
    """As ``Client``, for asyncio: ``await acquire(...)`` returns an AsyncPermit for ``async with``.

    Make it inside the event loop that uses it, and ``await close()`` it when done (or use
    ``async with AsyncClient() as client``). Cancelling a task that awaits ``acquire`` cancels the
    call: the sidecar takes the request out of its line and charges nothing.
    """

    def __init__(
        self,
        target: Optional[str] = None,
        *,
        on_unavailable: OnUnavailable = "raise",
        timeout: Seconds = DEFAULT_TIMEOUT,
    ) -> None:
        self.target = target_of(target)
        self.on_unavailable = checked_policy(on_unavailable)
        self.timeout = timeout_of(timeout)
        self._channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        self._stub = sluice_pb2_grpc.RateLimiterStub(self._channel)

    async def acquire(
        self,
        resource: str,
        /,
        cost: int = 1,
        max_wait: Optional[Seconds] = None,
        priority: int = 0,
        lane: Optional[str] = None,
        **descriptors: str,
    ) -> AsyncPermit:
        """As ``Client.acquire``; the permit is released by leaving its ``async with`` block."""
        wait = seconds(max_wait or 0, "max_wait")
        request = acquire_request(resource, cost, wait, priority, lane, descriptors)
        try:
            response: sluice_pb2.AcquireResponse = await self._stub.Acquire(request, timeout=self.timeout + wait)
        except grpc.RpcError as err:
            return AsyncPermit(unanswered_acquire(self.target, self.on_unavailable, err), self._release)
        return AsyncPermit(answer_of(response), self._release)

    async def _release(self, permit_id: str, actual_cost: Optional[int]) -> bool:
        try:
            response: sluice_pb2.ReleaseResponse = await self._stub.Release(release_request(permit_id, actual_cost), timeout=self.timeout)
        except grpc.RpcError as err:
            return unanswered_release(self.target, self.on_unavailable, err)
        return response.released

    async def close(self) -> None:
        """Closes the channel; calls after this fail."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncClient({self.target!r}, on_unavailable={self.on_unavailable!r}, timeout={self.timeout})"
