from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DECIDED_BY_UNSPECIFIED: DecidedBy
DESCRIPTOR: _descriptor.FileDescriptor
FAIL_CLOSED: DecidedBy
FAIL_OPEN: DecidedBy
LEASE: DecidedBy
LOCAL_FALLBACK: DecidedBy
STORE: DecidedBy

class AcquireRequest(_message.Message):
    __slots__ = ["cost", "descriptors", "lane", "max_wait", "priority", "request_id", "resource"]
    class DescriptorsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COST_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTORS_FIELD_NUMBER: _ClassVar[int]
    LANE_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    cost: int
    descriptors: _containers.ScalarMap[str, str]
    lane: str
    max_wait: _duration_pb2.Duration
    priority: int
    request_id: str
    resource: str
    def __init__(self, resource: _Optional[str] = ..., descriptors: _Optional[_Mapping[str, str]] = ..., cost: _Optional[int] = ..., max_wait: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., priority: _Optional[int] = ..., lane: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class AcquireResponse(_message.Message):
    __slots__ = ["decided_by", "granted", "limit", "limit_name", "permit_id", "reason", "remaining", "request_id", "reset_after", "retry_after", "waited"]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_NAME_FIELD_NUMBER: _ClassVar[int]
    PERMIT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESET_AFTER_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    WAITED_FIELD_NUMBER: _ClassVar[int]
    decided_by: DecidedBy
    granted: bool
    limit: int
    limit_name: str
    permit_id: str
    reason: str
    remaining: int
    request_id: str
    reset_after: _duration_pb2.Duration
    retry_after: _duration_pb2.Duration
    waited: _duration_pb2.Duration
    def __init__(self, granted: bool = ..., permit_id: _Optional[str] = ..., retry_after: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., remaining: _Optional[int] = ..., limit: _Optional[int] = ..., reset_after: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., limit_name: _Optional[str] = ..., decided_by: _Optional[_Union[DecidedBy, str]] = ..., waited: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., request_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class InspectRequest(_message.Message):
    __slots__ = ["descriptors", "resource"]
    class DescriptorsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DESCRIPTORS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    descriptors: _containers.ScalarMap[str, str]
    resource: str
    def __init__(self, resource: _Optional[str] = ..., descriptors: _Optional[_Mapping[str, str]] = ...) -> None: ...

class InspectResponse(_message.Message):
    __slots__ = ["limits", "waiters"]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    WAITERS_FIELD_NUMBER: _ClassVar[int]
    limits: _containers.RepeatedCompositeFieldContainer[LimitState]
    waiters: int
    def __init__(self, limits: _Optional[_Iterable[_Union[LimitState, _Mapping]]] = ..., waiters: _Optional[int] = ...) -> None: ...

class LimitState(_message.Message):
    __slots__ = ["algorithm", "limit", "name", "remaining", "reset_after"]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    RESET_AFTER_FIELD_NUMBER: _ClassVar[int]
    algorithm: str
    limit: int
    name: str
    remaining: int
    reset_after: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., algorithm: _Optional[str] = ..., remaining: _Optional[int] = ..., limit: _Optional[int] = ..., reset_after: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ["actual_cost", "permit_id"]
    ACTUAL_COST_FIELD_NUMBER: _ClassVar[int]
    PERMIT_ID_FIELD_NUMBER: _ClassVar[int]
    actual_cost: int
    permit_id: str
    def __init__(self, permit_id: _Optional[str] = ..., actual_cost: _Optional[int] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ["released"]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: bool
    def __init__(self, released: bool = ...) -> None: ...

class DecidedBy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
