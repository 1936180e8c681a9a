"""What ``acquire``, ``release`` and ``settle`` raise."""
from __future__ import annotations

from typing import Optional

import grpc


class SluiceError(Exception):
    """Base class of every exception this package raises."""


class Denied(SluiceError):
    """The request was not granted: the answer of a limit, not a failure.

    ``retry_after`` is in seconds, or ``None`` when the request can never be granted as asked
    (its cost is larger than a limit's capacity; ``reason`` says so), or when no sidecar answered
    (``decided_by == "CLIENT_CLOSED"``).
    """

    def __init__(
        self,
        reason: str,
        *,
        retry_after: Optional[float],
        limit_name: str,
        decided_by: str,
        remaining: int = 0,
        limit: int = 0,
        waited: Optional[float] = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        """Seconds until the same request could be granted; None when it never can."""
        self.limit_name = limit_name
        """The limit that denied ("" when no sidecar answered)."""
        self.decided_by = decided_by
        """STORE, LEASE, FAIL_CLOSED or LOCAL_FALLBACK from the sidecar; CLIENT_CLOSED from this client."""
        self.remaining = remaining
        self.limit = limit
        self.waited = waited
        """Seconds the request waited in line (max_wait) before it was denied; None if it did not wait."""

    def __repr__(self) -> str:
        return (
            f"Denied({self.reason!r}, retry_after={self.retry_after!r}, "
            f"limit_name={self.limit_name!r}, decided_by={self.decided_by!r})"
        )


class CallFailed(SluiceError):
    """A call to the sidecar ended with a gRPC error status."""

    def __init__(self, target: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"sluice sidecar at {target}: {code.name}: {details}")
        self.target = target
        self.code = code
        """The gRPC status code."""
        self.details = details
        """The status message, as the sidecar (or the gRPC library) worded it."""


class Unavailable(CallFailed):
    """No answer from the sidecar: it cannot be reached, it answered UNAVAILABLE (its store could
    not answer), or the call's deadline passed.

    ``acquire`` raises it only with ``on_unavailable="raise"``; ``release`` and ``settle`` raise it
    with ``"raise"`` and otherwise return False.
    """


class SidecarError(CallFailed):
    """The sidecar refused the call: INVALID_ARGUMENT (a bad field or a missing descriptor key),
    NOT_FOUND (a resource the policy does not have), RESOURCE_EXHAUSTED (a waiting line or the
    sidecar is full), or any other status that is not ``Unavailable``.

    Raised whatever ``on_unavailable`` says: the request itself needs fixing, or the sidecar is
    shedding load on purpose.
    """
