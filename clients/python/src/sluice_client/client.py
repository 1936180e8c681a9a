"""The client for synchronous code."""
from __future__ import annotations

from types import TracebackType
from typing import Optional, Type

import grpc

from ._permit import Permit
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


class Client:
    """A channel to a sluice sidecar. Safe to share between threads; ``close()`` it when done, or
    use it as a context manager.

    :param target: the sidecar's host:port; default ``$SLUICE_ADDR``, then ``127.0.0.1:50051``.
    :param on_unavailable: what ``acquire`` does when the sidecar gives no answer (it cannot be
        reached, it answers UNAVAILABLE, or the deadline passes): ``"raise"`` raises
        ``Unavailable``; ``"open"`` grants, with a Permit whose ``decided_by`` is ``"CLIENT_OPEN"``;
        ``"closed"`` raises ``Denied`` with ``decided_by == "CLIENT_CLOSED"``. Other errors
        (``SidecarError``) are raised whatever it says.
    :param timeout: how long a call may take beyond its ``max_wait``, in seconds or a
        ``timedelta``.
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
        self._channel = grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        self._stub = sluice_pb2_grpc.RateLimiterStub(self._channel)

    def acquire(
        self,
        resource: str,
        /,
        cost: int = 1,
        max_wait: Optional[Seconds] = None,
        priority: int = 0,
        lane: Optional[str] = None,
        **descriptors: str,
    ) -> Permit:
        """Asks for ``cost`` units of ``resource`` for the scope that ``descriptors`` name.

        :param max_wait: how long to wait in the sidecar's line for budget (at most 300 s); None
            or 0 answers at once. The call's deadline is ``timeout`` beyond it.
        :param priority: higher is served first among waiting requests.
        :param lane: one of the resource's lanes; None for its first.
        :returns: a Permit; leaving its ``with`` block releases it.
        :raises Denied: the sidecar denied (or could not be reached, with ``on_unavailable="closed"``).
        :raises Unavailable: the sidecar could not be reached, with ``on_unavailable="raise"``.
        :raises SidecarError: the sidecar refused the request (bad input, unknown resource, a full line).
        """
        wait = seconds(max_wait or 0, "max_wait")
        request = acquire_request(resource, cost, wait, priority, lane, descriptors)
        try:
            response: sluice_pb2.AcquireResponse = self._stub.Acquire(request, timeout=self.timeout + wait)
        except grpc.RpcError as err:
            return Permit(unanswered_acquire(self.target, self.on_unavailable, err), self._release)
        return Permit(answer_of(response), self._release)

    def _release(self, permit_id: str, actual_cost: Optional[int]) -> bool:
        try:
            response: sluice_pb2.ReleaseResponse = self._stub.Release(release_request(permit_id, actual_cost), timeout=self.timeout)
        except grpc.RpcError as err:
            return unanswered_release(self.target, self.on_unavailable, err)
        return response.released

    def close(self) -> None:
        """Closes the channel; calls after this fail."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.target!r}, on_unavailable={self.on_unavailable!r}, timeout={self.timeout})"
