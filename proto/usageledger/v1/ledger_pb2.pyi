import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_WORKLOAD_SCHEDULED: _ClassVar[EventType]
    EVENT_TYPE_IMAGE_PULL_STARTED: _ClassVar[EventType]
    EVENT_TYPE_WORKLOAD_UP: _ClassVar[EventType]
    EVENT_TYPE_WORKLOAD_READY: _ClassVar[EventType]
    EVENT_TYPE_WORKLOAD_BOOT_FAILED: _ClassVar[EventType]
    EVENT_TYPE_WORKLOAD_STOPPED: _ClassVar[EventType]
    EVENT_TYPE_REQUEST_STARTED: _ClassVar[EventType]
    EVENT_TYPE_REQUEST_FINISHED: _ClassVar[EventType]
    EVENT_TYPE_STORAGE_SAMPLE: _ClassVar[EventType]
    EVENT_TYPE_HEARTBEAT: _ClassVar[EventType]

class WorkloadKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKLOAD_KIND_UNSPECIFIED: _ClassVar[WorkloadKind]
    WORKLOAD_KIND_SERVING: _ClassVar[WorkloadKind]
    WORKLOAD_KIND_BUILD: _ClassVar[WorkloadKind]
    WORKLOAD_KIND_TRAINING: _ClassVar[WorkloadKind]

class WorkerType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_TYPE_UNSPECIFIED: _ClassVar[WorkerType]
    WORKER_TYPE_FLEX: _ClassVar[WorkerType]
    WORKER_TYPE_ACTIVE: _ClassVar[WorkerType]

class StopReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STOP_REASON_UNSPECIFIED: _ClassVar[StopReason]
    STOP_REASON_SCALED_DOWN: _ClassVar[StopReason]
    STOP_REASON_OOM: _ClassVar[StopReason]
    STOP_REASON_CRASH: _ClassVar[StopReason]
    STOP_REASON_COMPLETED: _ClassVar[StopReason]
    STOP_REASON_CANCELLED: _ClassVar[StopReason]
    STOP_REASON_BUILD_SUCCEEDED: _ClassVar[StopReason]
    STOP_REASON_BUILD_FAILED: _ClassVar[StopReason]

class StorageKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORAGE_KIND_UNSPECIFIED: _ClassVar[StorageKind]
    STORAGE_KIND_CONTAINER_DISK: _ClassVar[StorageKind]
    STORAGE_KIND_NETWORK_VOLUME: _ClassVar[StorageKind]

class EntryKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTRY_KIND_UNSPECIFIED: _ClassVar[EntryKind]
    ENTRY_KIND_EVENT: _ClassVar[EntryKind]
    ENTRY_KIND_PRICE_BOOK: _ClassVar[EntryKind]
    ENTRY_KIND_ACCOUNT: _ClassVar[EntryKind]
    ENTRY_KIND_CREDIT: _ClassVar[EntryKind]
    ENTRY_KIND_ADJUSTMENT: _ClassVar[EntryKind]
    ENTRY_KIND_INVOICE: _ClassVar[EntryKind]
    ENTRY_KIND_PAYMENT: _ClassVar[EntryKind]
    ENTRY_KIND_STATE: _ClassVar[EntryKind]
    ENTRY_KIND_BACKFILL: _ClassVar[EntryKind]
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_WORKLOAD_SCHEDULED: EventType
EVENT_TYPE_IMAGE_PULL_STARTED: EventType
EVENT_TYPE_WORKLOAD_UP: EventType
EVENT_TYPE_WORKLOAD_READY: EventType
EVENT_TYPE_WORKLOAD_BOOT_FAILED: EventType
EVENT_TYPE_WORKLOAD_STOPPED: EventType
EVENT_TYPE_REQUEST_STARTED: EventType
EVENT_TYPE_REQUEST_FINISHED: EventType
EVENT_TYPE_STORAGE_SAMPLE: EventType
EVENT_TYPE_HEARTBEAT: EventType
WORKLOAD_KIND_UNSPECIFIED: WorkloadKind
WORKLOAD_KIND_SERVING: WorkloadKind
WORKLOAD_KIND_BUILD: WorkloadKind
WORKLOAD_KIND_TRAINING: WorkloadKind
WORKER_TYPE_UNSPECIFIED: WorkerType
WORKER_TYPE_FLEX: WorkerType
WORKER_TYPE_ACTIVE: WorkerType
STOP_REASON_UNSPECIFIED: StopReason
STOP_REASON_SCALED_DOWN: StopReason
STOP_REASON_OOM: StopReason
STOP_REASON_CRASH: StopReason
STOP_REASON_COMPLETED: StopReason
STOP_REASON_CANCELLED: StopReason
STOP_REASON_BUILD_SUCCEEDED: StopReason
STOP_REASON_BUILD_FAILED: StopReason
STORAGE_KIND_UNSPECIFIED: StorageKind
STORAGE_KIND_CONTAINER_DISK: StorageKind
STORAGE_KIND_NETWORK_VOLUME: StorageKind
ENTRY_KIND_UNSPECIFIED: EntryKind
ENTRY_KIND_EVENT: EntryKind
ENTRY_KIND_PRICE_BOOK: EntryKind
ENTRY_KIND_ACCOUNT: EntryKind
ENTRY_KIND_CREDIT: EntryKind
ENTRY_KIND_ADJUSTMENT: EntryKind
ENTRY_KIND_INVOICE: EntryKind
ENTRY_KIND_PAYMENT: EntryKind
ENTRY_KIND_STATE: EntryKind
ENTRY_KIND_BACKFILL: EntryKind

class Backfill(_message.Message):
    __slots__ = ("org_id", "backfill_id", "from_time", "to_time", "reason", "open", "open_time", "close_time", "close_reason", "open_sequence", "close_sequence")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    BACKFILL_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_TIME_FIELD_NUMBER: _ClassVar[int]
    TO_TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    OPEN_TIME_FIELD_NUMBER: _ClassVar[int]
    CLOSE_TIME_FIELD_NUMBER: _ClassVar[int]
    CLOSE_REASON_FIELD_NUMBER: _ClassVar[int]
    OPEN_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CLOSE_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    backfill_id: str
    from_time: _timestamp_pb2.Timestamp
    to_time: _timestamp_pb2.Timestamp
    reason: str
    open: bool
    open_time: _timestamp_pb2.Timestamp
    close_time: _timestamp_pb2.Timestamp
    close_reason: str
    open_sequence: int
    close_sequence: int
    def __init__(self, org_id: _Optional[str] = ..., backfill_id: _Optional[str] = ..., from_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., to_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., open: _Optional[bool] = ..., open_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., close_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., close_reason: _Optional[str] = ..., open_sequence: _Optional[int] = ..., close_sequence: _Optional[int] = ...) -> None: ...

class OpenBackfillRequest(_message.Message):
    __slots__ = ("org_id", "backfill_id", "from_time", "to_time", "reason")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    BACKFILL_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_TIME_FIELD_NUMBER: _ClassVar[int]
    TO_TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    backfill_id: str
    from_time: _timestamp_pb2.Timestamp
    to_time: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, org_id: _Optional[str] = ..., backfill_id: _Optional[str] = ..., from_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., to_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class OpenBackfillResponse(_message.Message):
    __slots__ = ("backfill", "already_open")
    BACKFILL_FIELD_NUMBER: _ClassVar[int]
    ALREADY_OPEN_FIELD_NUMBER: _ClassVar[int]
    backfill: Backfill
    already_open: bool
    def __init__(self, backfill: _Optional[_Union[Backfill, _Mapping]] = ..., already_open: _Optional[bool] = ...) -> None: ...

class CloseBackfillRequest(_message.Message):
    __slots__ = ("org_id", "backfill_id", "reason")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    BACKFILL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    backfill_id: str
    reason: str
    def __init__(self, org_id: _Optional[str] = ..., backfill_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CloseBackfillResponse(_message.Message):
    __slots__ = ("backfill",)
    BACKFILL_FIELD_NUMBER: _ClassVar[int]
    backfill: Backfill
    def __init__(self, backfill: _Optional[_Union[Backfill, _Mapping]] = ...) -> None: ...

class ListBackfillsRequest(_message.Message):
    __slots__ = ("org_id", "page_size", "page_token")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    page_size: int
    page_token: str
    def __init__(self, org_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBackfillsResponse(_message.Message):
    __slots__ = ("backfills", "next_page_token")
    BACKFILLS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    backfills: _containers.RepeatedCompositeFieldContainer[Backfill]
    next_page_token: str
    def __init__(self, backfills: _Optional[_Iterable[_Union[Backfill, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UsageEvent(_message.Message):
    __slots__ = ("event_id", "org_id", "workspace_id", "endpoint_id", "workload_id", "workload_kind", "development", "instance_type", "worker_type", "type", "occur_time", "request_id", "stop_reason", "storage_kind", "volume_id", "gigabytes", "interval_seconds")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_KIND_FIELD_NUMBER: _ClassVar[int]
    DEVELOPMENT_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    WORKER_TYPE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OCCUR_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    STORAGE_KIND_FIELD_NUMBER: _ClassVar[int]
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    GIGABYTES_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    org_id: str
    workspace_id: str
    endpoint_id: str
    workload_id: str
    workload_kind: WorkloadKind
    development: bool
    instance_type: str
    worker_type: WorkerType
    type: EventType
    occur_time: _timestamp_pb2.Timestamp
    request_id: str
    stop_reason: StopReason
    storage_kind: StorageKind
    volume_id: str
    gigabytes: str
    interval_seconds: int
    def __init__(self, event_id: _Optional[str] = ..., org_id: _Optional[str] = ..., workspace_id: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., workload_id: _Optional[str] = ..., workload_kind: _Optional[_Union[WorkloadKind, str]] = ..., development: _Optional[bool] = ..., instance_type: _Optional[str] = ..., worker_type: _Optional[_Union[WorkerType, str]] = ..., type: _Optional[_Union[EventType, str]] = ..., occur_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[str] = ..., stop_reason: _Optional[_Union[StopReason, str]] = ..., storage_kind: _Optional[_Union[StorageKind, str]] = ..., volume_id: _Optional[str] = ..., gigabytes: _Optional[str] = ..., interval_seconds: _Optional[int] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ("log_id", "sequence", "kind", "record_time", "body", "previous_hash", "entry_hash")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RECORD_TIME_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_HASH_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    log_id: str
    sequence: int
    kind: EntryKind
    record_time: _timestamp_pb2.Timestamp
    body: bytes
    previous_hash: bytes
    entry_hash: bytes
    def __init__(self, log_id: _Optional[str] = ..., sequence: _Optional[int] = ..., kind: _Optional[_Union[EntryKind, str]] = ..., record_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., body: _Optional[bytes] = ..., previous_hash: _Optional[bytes] = ..., entry_hash: _Optional[bytes] = ...) -> None: ...

class AppendEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[UsageEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[UsageEvent, _Mapping]]] = ...) -> None: ...

class AppendResult(_message.Message):
    __slots__ = ("log_id", "sequence", "entry_hash", "duplicate")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    log_id: str
    sequence: int
    entry_hash: bytes
    duplicate: bool
    def __init__(self, log_id: _Optional[str] = ..., sequence: _Optional[int] = ..., entry_hash: _Optional[bytes] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class AppendEventsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AppendResult]
    def __init__(self, results: _Optional[_Iterable[_Union[AppendResult, _Mapping]]] = ...) -> None: ...

class StreamEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[UsageEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[UsageEvent, _Mapping]]] = ...) -> None: ...

class StreamEventsResponse(_message.Message):
    __slots__ = ("appended", "duplicates", "batches")
    APPENDED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    appended: int
    duplicates: int
    batches: int
    def __init__(self, appended: _Optional[int] = ..., duplicates: _Optional[int] = ..., batches: _Optional[int] = ...) -> None: ...

class GetEntryRequest(_message.Message):
    __slots__ = ("log_id", "sequence")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    log_id: str
    sequence: int
    def __init__(self, log_id: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class GetEntryResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: Entry
    def __init__(self, entry: _Optional[_Union[Entry, _Mapping]] = ...) -> None: ...

class ListEntriesRequest(_message.Message):
    __slots__ = ("log_id", "page_size", "page_token", "start_sequence")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    START_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    log_id: str
    page_size: int
    page_token: str
    start_sequence: int
    def __init__(self, log_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., start_sequence: _Optional[int] = ...) -> None: ...

class ListEntriesResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetLogHeadRequest(_message.Message):
    __slots__ = ("log_id",)
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    log_id: str
    def __init__(self, log_id: _Optional[str] = ...) -> None: ...

class GetLogHeadResponse(_message.Message):
    __slots__ = ("head",)
    HEAD_FIELD_NUMBER: _ClassVar[int]
    head: LogHead
    def __init__(self, head: _Optional[_Union[LogHead, _Mapping]] = ...) -> None: ...

class LogHead(_message.Message):
    __slots__ = ("log_id", "size", "head_hash", "root_hash")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    HEAD_HASH_FIELD_NUMBER: _ClassVar[int]
    ROOT_HASH_FIELD_NUMBER: _ClassVar[int]
    log_id: str
    size: int
    head_hash: bytes
    root_hash: bytes
    def __init__(self, log_id: _Optional[str] = ..., size: _Optional[int] = ..., head_hash: _Optional[bytes] = ..., root_hash: _Optional[bytes] = ...) -> None: ...

class ListLogsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListLogsResponse(_message.Message):
    __slots__ = ("heads", "next_page_token")
    HEADS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    heads: _containers.RepeatedCompositeFieldContainer[LogHead]
    next_page_token: str
    def __init__(self, heads: _Optional[_Iterable[_Union[LogHead, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
