"""Between Python values and sluice.v1 messages, and from gRPC errors to this package's exceptions:
what Client and AsyncClient share."""
from __future__ import annotations

import logging
import math
import os
from datetime import timedelta
from typing import Any, Literal, Mapping, NamedTuple, Optional, Union, get_args

import grpc
from google.protobuf.duration_pb2 import Duration

from .errors import CallFailed, Denied, SidecarError, Unavailable
from .v1 import sluice_pb2


Seconds = Union[float, timedelta]
"""A length of time: seconds as a number, or a ``datetime.timedelta``."""

OnUnavailable = Literal["raise", "open", "closed"]

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 2.0
"""Seconds a call may take beyond its max_wait. A sidecar decides within its store.timeout
(20 ms by default) and answers a waiting request when its max_wait passes."""

ON_UNAVAILABLE = get_args(OnUnavailable)
# The sidecar is on this host: an http_proxy in the environment must not carry calls to it.
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]
UNAVAILABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

log = logging.getLogger("sluice_client")


class Answer(NamedTuple):
    """What a Permit tells of its grant."""

    permit_id: str
    remaining: int
    limit: int
    limit_name: str
    decided_by: str
    waited: Optional[float]
    reset_after: Optional[float]
    reason: str


def target_of(target: Optional[str]) -> str:
    """The argument, else $SLUICE_ADDR, else 127.0.0.1:50051."""
    return target or os.environ.get("SLUICE_ADDR") or DEFAULT_TARGET


def checked_policy(on_unavailable: str) -> OnUnavailable:
    if on_unavailable not in ON_UNAVAILABLE:
        raise ValueError(f"on_unavailable must be one of {', '.join(ON_UNAVAILABLE)}, not {on_unavailable!r}")
    return on_unavailable  # type: ignore[return-value]


def timeout_of(value: Seconds) -> float:
    timeout = seconds(value, "timeout")
    if timeout == 0:
        raise ValueError("timeout must be more than 0 seconds")
    return timeout


def seconds(value: Seconds, name: str) -> float:
    """``value`` in seconds; ValueError unless it is a finite number, zero or more."""
    as_float = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(as_float) or as_float < 0:
        raise ValueError(f"{name} must be zero or more seconds, not {value!r}")
    return as_float


def acquire_request(
    resource: str,
    cost: int,
    max_wait: float,
    priority: int,
    lane: Optional[str],
    descriptors: Mapping[str, str],
) -> sluice_pb2.AcquireRequest:
    request = sluice_pb2.AcquireRequest(resource=resource, descriptors=descriptors, cost=cost, priority=priority, lane=lane or "")
    if max_wait > 0:
        request.max_wait.FromNanoseconds(math.ceil(max_wait * 1e9))
    return request


def release_request(permit_id: str, actual_cost: Optional[int]) -> sluice_pb2.ReleaseRequest:
    if actual_cost is None:
        return sluice_pb2.ReleaseRequest(permit_id=permit_id)
    return sluice_pb2.ReleaseRequest(permit_id=permit_id, actual_cost=actual_cost)


def answer_of(response: sluice_pb2.AcquireResponse) -> Answer:
    """The grant's fields; raises Denied when the sidecar denied."""
    if not response.granted:
        raise Denied(
            response.reason,
            retry_after=_optional_seconds(response, "retry_after"),
            limit_name=response.limit_name,
            decided_by=_decided_by_name(response.decided_by),
            remaining=response.remaining,
            limit=response.limit,
            waited=_optional_seconds(response, "waited"),
        )
    return Answer(
        permit_id=response.permit_id,
        remaining=response.remaining,
        limit=response.limit,
        limit_name=response.limit_name,
        decided_by=_decided_by_name(response.decided_by),
        waited=_optional_seconds(response, "waited"),
        reset_after=_optional_seconds(response, "reset_after"),
        reason=response.reason,
    )


def call_failed(target: str, err: Any) -> CallFailed:
    """The exception for a failed call (``err`` a grpc.RpcError, sync or aio)."""
    code: grpc.StatusCode = err.code()
    details: str = err.details() or ""
    if code in UNAVAILABLE_CODES:
        return Unavailable(target, code, details)
    return SidecarError(target, code, details)


def unanswered_acquire(target: str, on_unavailable: OnUnavailable, err: Any) -> Answer:
    """What an Acquire that failed with ``err`` comes to: a grant that says so with "open", else
    an exception."""
    failure = call_failed(target, err)
    if not isinstance(failure, Unavailable) or on_unavailable == "raise":
        raise failure from err
    if on_unavailable == "closed":
        raise Denied(
            f"{failure}; denied by the client (on_unavailable='closed')",
            retry_after=None,
            limit_name="",
            decided_by="CLIENT_CLOSED",
        ) from err
    log.warning("%s; granted by the client (on_unavailable='open')", failure)
    return Answer(
        permit_id="",
        remaining=0,
        limit=0,
        limit_name="",
        decided_by="CLIENT_OPEN",
        waited=None,
        reset_after=None,
        reason=f"{failure}; granted by the client (on_unavailable='open')",
    )


def unanswered_release(target: str, on_unavailable: OnUnavailable, err: Any) -> bool:
    """What a Release that failed with ``err`` comes to: False when the sidecar could not be
    reached and on_unavailable is "open" or "closed" (the permit lapses at its ttl), else an
    exception."""
    failure = call_failed(target, err)
    if not isinstance(failure, Unavailable) or on_unavailable == "raise":
        raise failure from err
    log.warning("%s; the permit was not released and lapses at its ttl", failure)
    return False


def _optional_seconds(message: Any, field: str) -> Optional[float]:
    if not message.HasField(field):
        return None
    duration: Duration = getattr(message, field)
    return float(duration.seconds + duration.nanos / 1e9)


def _decided_by_name(value: int) -> str:
    try:
        return str(sluice_pb2.DecidedBy.Name(value))
    except ValueError:  # a value newer than these stubs
        return str(value)
