"""Permits: grants that are given back when their block ends."""
from __future__ import annotations

from types import TracebackType
from typing import Awaitable, Callable, Optional, Type

from ._wire import Answer

GiveBack = Callable[[str, Optional[int]], bool]
"""Release(permit_id, actual_cost) through the client that granted the permit."""
AsyncGiveBack = Callable[[str, Optional[int]], Awaitable[bool]]


class _Grant:
    """A grant's fields, and whether it has been given back: what Permit and AsyncPermit share."""

    granted = True
    """Always True: a denial raises Denied instead."""
    permit_id: str
    """Set when the sidecar holds something to give back (the resource has a concurrency limit
    or settles costs); "" when there is nothing to release."""
    remaining: int
    """Units left in the deciding limit after this grant."""
    limit: int
    """The deciding limit's capacity."""
    limit_name: str
    """The limit with the least left."""
    decided_by: str
    """LEASE, STORE, FAIL_OPEN or LOCAL_FALLBACK from the sidecar; CLIENT_OPEN when this client
    could not reach the sidecar and on_unavailable="open" granted (there is nothing to release)."""
    waited: Optional[float]
    """Seconds spent waiting in line (max_wait); None when the request did not wait."""
    reset_after: Optional[float]
    """Seconds until the deciding limit is full again if nothing more is taken."""
    reason: str
    """Empty for the sidecar's grants; for CLIENT_OPEN, why the sidecar gave no answer."""

    def __init__(self, answer: Answer) -> None:
        self.permit_id = answer.permit_id
        self.remaining = answer.remaining
        self.limit = answer.limit
        self.limit_name = answer.limit_name
        self.decided_by = answer.decided_by
        self.waited = answer.waited
        self.reset_after = answer.reset_after
        self.reason = answer.reason
        self._given_back = False

    @property
    def released(self) -> bool:
        """True once released, settled or its block left, whether or not there was anything to give back."""
        return self._given_back

    def _first_with_permit_id(self) -> bool:
        """Marks the permit given back. True the first time, if the sidecar holds something for it."""
        first = not self._given_back
        self._given_back = True
        return first and self.permit_id != ""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(permit_id={self.permit_id!r}, remaining={self.remaining}, limit={self.limit}, "
            f"limit_name={self.limit_name!r}, decided_by={self.decided_by!r}, waited={self.waited!r}, released={self.released})"
        )


class Permit(_Grant):
    """A grant from ``Client.acquire``. Leaving its ``with`` block releases it, once.

    ``release()`` and ``settle()`` give it back earlier; whichever comes first is the only call to
    the sidecar, and a Permit without a ``permit_id`` makes none.
    """

    def __init__(self, answer: Answer, give_back: GiveBack) -> None:
        super().__init__(answer)
        self._give_back = give_back

    def release(self) -> bool:
        """Gives the permit back (frees its concurrency slots). True when the sidecar released it;
        False when there was nothing to release, it was given back before, the sidecar no longer
        knew it (expired), or the sidecar could not be reached and on_unavailable is not "raise"."""
        return self._give_back(self.permit_id, None) if self._first_with_permit_id() else False

    def settle(self, actual_cost: int) -> bool:
        """Releases the permit with the real cost: the difference from the acquired cost is
        refunded to (or charged to) every limit that charged it. Returns as ``release()``; leaving
        the block afterwards does nothing more."""
        return self._give_back(self.permit_id, actual_cost) if self._first_with_permit_id() else False

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.release()


class AsyncPermit(_Grant):
    """A grant from ``AsyncClient.acquire``. Leaving its ``async with`` block releases it, once.

    ``await release()`` and ``await settle()`` give it back earlier; whichever comes first is the
    only call to the sidecar, and a permit without a ``permit_id`` makes none.
    """

    def __init__(self, answer: Answer, give_back: AsyncGiveBack) -> None:
        super().__init__(answer)
        self._give_back = give_back

    async def release(self) -> bool:
        """As ``Permit.release``."""
        return await self._give_back(self.permit_id, None) if self._first_with_permit_id() else False

    async def settle(self, actual_cost: int) -> bool:
        """As ``Permit.settle``."""
        return await self._give_back(self.permit_id, actual_cost) if self._first_with_permit_id() else False

    async def __aenter__(self) -> AsyncPermit:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        await self.release()
