import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from usageledger.v1 import ledger_pb2 as _ledger_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GroupBy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GROUP_BY_UNSPECIFIED: _ClassVar[GroupBy]
    GROUP_BY_ENDPOINT: _ClassVar[GroupBy]
    GROUP_BY_WORKLOAD_KIND: _ClassVar[GroupBy]
    GROUP_BY_INSTANCE_TYPE: _ClassVar[GroupBy]
    GROUP_BY_WORKER_TYPE: _ClassVar[GroupBy]

class Bucket(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUCKET_UNSPECIFIED: _ClassVar[Bucket]
    BUCKET_HOUR: _ClassVar[Bucket]
    BUCKET_DAY: _ClassVar[Bucket]

class UsageUnit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_UNIT_UNSPECIFIED: _ClassVar[UsageUnit]
    USAGE_UNIT_MINUTE: _ClassVar[UsageUnit]
    USAGE_UNIT_SECOND: _ClassVar[UsageUnit]
    USAGE_UNIT_INTERVAL: _ClassVar[UsageUnit]
GROUP_BY_UNSPECIFIED: GroupBy
GROUP_BY_ENDPOINT: GroupBy
GROUP_BY_WORKLOAD_KIND: GroupBy
GROUP_BY_INSTANCE_TYPE: GroupBy
GROUP_BY_WORKER_TYPE: GroupBy
BUCKET_UNSPECIFIED: Bucket
BUCKET_HOUR: Bucket
BUCKET_DAY: Bucket
USAGE_UNIT_UNSPECIFIED: UsageUnit
USAGE_UNIT_MINUTE: UsageUnit
USAGE_UNIT_SECOND: UsageUnit
USAGE_UNIT_INTERVAL: UsageUnit

class QueryUsageRequest(_message.Message):
    __slots__ = ("org_id", "start_time", "end_time", "endpoint_id", "group_by", "bucket")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    endpoint_id: str
    group_by: _containers.RepeatedScalarFieldContainer[GroupBy]
    bucket: Bucket
    def __init__(self, org_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., endpoint_id: _Optional[str] = ..., group_by: _Optional[_Iterable[_Union[GroupBy, str]]] = ..., bucket: _Optional[_Union[Bucket, str]] = ...) -> None: ...

class UsageRow(_message.Message):
    __slots__ = ("endpoint_id", "workload_kind", "instance_type", "worker_type", "unit", "quantity", "amount", "bucket_start_time", "storage_kind", "amount_fraction", "gigabyte_seconds", "first_tier_gigabyte_seconds", "beyond_tier_gigabyte_seconds", "workload_kind_value", "worker_type_value", "unit_value", "storage_kind_value")
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_KIND_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    WORKER_TYPE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    BUCKET_START_TIME_FIELD_NUMBER: _ClassVar[int]
    STORAGE_KIND_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    GIGABYTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FIRST_TIER_GIGABYTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BEYOND_TIER_GIGABYTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_KIND_VALUE_FIELD_NUMBER: _ClassVar[int]
    WORKER_TYPE_VALUE_FIELD_NUMBER: _ClassVar[int]
    UNIT_VALUE_FIELD_NUMBER: _ClassVar[int]
    STORAGE_KIND_VALUE_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: str
    workload_kind: str
    instance_type: str
    worker_type: str
    unit: str
    quantity: int
    amount: str
    bucket_start_time: _timestamp_pb2.Timestamp
    storage_kind: str
    amount_fraction: str
    gigabyte_seconds: str
    first_tier_gigabyte_seconds: str
    beyond_tier_gigabyte_seconds: str
    workload_kind_value: _ledger_pb2.WorkloadKind
    worker_type_value: _ledger_pb2.WorkerType
    unit_value: UsageUnit
    storage_kind_value: _ledger_pb2.StorageKind
    def __init__(self, endpoint_id: _Optional[str] = ..., workload_kind: _Optional[str] = ..., instance_type: _Optional[str] = ..., worker_type: _Optional[str] = ..., unit: _Optional[str] = ..., quantity: _Optional[int] = ..., amount: _Optional[str] = ..., bucket_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., storage_kind: _Optional[str] = ..., amount_fraction: _Optional[str] = ..., gigabyte_seconds: _Optional[str] = ..., first_tier_gigabyte_seconds: _Optional[str] = ..., beyond_tier_gigabyte_seconds: _Optional[str] = ..., workload_kind_value: _Optional[_Union[_ledger_pb2.WorkloadKind, str]] = ..., worker_type_value: _Optional[_Union[_ledger_pb2.WorkerType, str]] = ..., unit_value: _Optional[_Union[UsageUnit, str]] = ..., storage_kind_value: _Optional[_Union[_ledger_pb2.StorageKind, str]] = ...) -> None: ...

class QueryUsageResponse(_message.Message):
    __slots__ = ("rows", "total_amount", "currency_code", "as_of_size", "total_amount_fraction")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_SIZE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_AMOUNT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[UsageRow]
    total_amount: str
    currency_code: str
    as_of_size: int
    total_amount_fraction: str
    def __init__(self, rows: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ..., total_amount: _Optional[str] = ..., currency_code: _Optional[str] = ..., as_of_size: _Optional[int] = ..., total_amount_fraction: _Optional[str] = ...) -> None: ...

class RebuildRollupsRequest(_message.Message):
    __slots__ = ("org_id",)
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    def __init__(self, org_id: _Optional[str] = ...) -> None: ...

class RebuildRollupsResponse(_message.Message):
    __slots__ = ("entries", "workloads")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    entries: int
    workloads: int
    def __init__(self, entries: _Optional[int] = ..., workloads: _Optional[int] = ...) -> None: ...
