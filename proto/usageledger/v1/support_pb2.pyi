import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from usageledger.v1 import ledger_pb2 as _ledger_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_BILLED: _ClassVar[Verdict]
    VERDICT_NOT_BILLED: _ClassVar[Verdict]
VERDICT_UNSPECIFIED: Verdict
VERDICT_BILLED: Verdict
VERDICT_NOT_BILLED: Verdict

class DisputeEntryRef(_message.Message):
    __slots__ = ("log_id", "sequence", "entry_hash")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    log_id: str
    sequence: int
    entry_hash: bytes
    def __init__(self, log_id: _Optional[str] = ..., sequence: _Optional[int] = ..., entry_hash: _Optional[bytes] = ...) -> None: ...

class ReconstructChargesRequest(_message.Message):
    __slots__ = ("org_id", "endpoint_id", "request_id", "start_time", "end_time", "approximate_time", "tolerance", "include_proofs")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    APPROXIMATE_TIME_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PROOFS_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    endpoint_id: str
    request_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    approximate_time: _timestamp_pb2.Timestamp
    tolerance: _duration_pb2.Duration
    include_proofs: bool
    def __init__(self, org_id: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., request_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., approximate_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tolerance: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., include_proofs: _Optional[bool] = ...) -> None: ...

class ReconstructChargesResponse(_message.Message):
    __slots__ = ("org_id", "endpoint_id", "start_time", "end_time", "as_of_time", "sessions", "zero_lines", "storage", "anomalies", "adjustments", "request", "entries", "totals", "invoices", "proofs", "notes", "currency_code")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    AS_OF_TIME_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    ZERO_LINES_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    ANOMALIES_FIELD_NUMBER: _ClassVar[int]
    ADJUSTMENTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    INVOICES_FIELD_NUMBER: _ClassVar[int]
    PROOFS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    endpoint_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    as_of_time: _timestamp_pb2.Timestamp
    sessions: _containers.RepeatedCompositeFieldContainer[DisputeSession]
    zero_lines: _containers.RepeatedCompositeFieldContainer[DisputeZeroLine]
    storage: _containers.RepeatedCompositeFieldContainer[DisputeStorageLine]
    anomalies: _containers.RepeatedCompositeFieldContainer[DisputeAnomaly]
    adjustments: _containers.RepeatedCompositeFieldContainer[DisputeAdjustment]
    request: DisputeRequest
    entries: _containers.RepeatedCompositeFieldContainer[DisputeEvidence]
    totals: DisputeTotals
    invoices: _containers.RepeatedCompositeFieldContainer[DisputeInvoice]
    proofs: _containers.RepeatedCompositeFieldContainer[DisputeProof]
    notes: _containers.RepeatedScalarFieldContainer[str]
    currency_code: str
    def __init__(self, org_id: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., as_of_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sessions: _Optional[_Iterable[_Union[DisputeSession, _Mapping]]] = ..., zero_lines: _Optional[_Iterable[_Union[DisputeZeroLine, _Mapping]]] = ..., storage: _Optional[_Iterable[_Union[DisputeStorageLine, _Mapping]]] = ..., anomalies: _Optional[_Iterable[_Union[DisputeAnomaly, _Mapping]]] = ..., adjustments: _Optional[_Iterable[_Union[DisputeAdjustment, _Mapping]]] = ..., request: _Optional[_Union[DisputeRequest, _Mapping]] = ..., entries: _Optional[_Iterable[_Union[DisputeEvidence, _Mapping]]] = ..., totals: _Optional[_Union[DisputeTotals, _Mapping]] = ..., invoices: _Optional[_Iterable[_Union[DisputeInvoice, _Mapping]]] = ..., proofs: _Optional[_Iterable[_Union[DisputeProof, _Mapping]]] = ..., notes: _Optional[_Iterable[str]] = ..., currency_code: _Optional[str] = ...) -> None: ...

class DisputeSession(_message.Message):
    __slots__ = ("workload_id", "endpoint_id", "workload_kind", "instance_type", "worker_type", "up_time", "ready_time", "stop_time", "stop_reason", "unit", "billed_units", "duration_seconds", "amount", "rules", "attribution", "timeline", "units", "parts", "requests", "request_count", "explanation", "verdict", "refs", "plan_ref", "window_amount", "requests_in_window", "invoiced")
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_KIND_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    WORKER_TYPE_FIELD_NUMBER: _ClassVar[int]
    UP_TIME_FIELD_NUMBER: _ClassVar[int]
    READY_TIME_FIELD_NUMBER: _ClassVar[int]
    STOP_TIME_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    BILLED_UNITS_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_COUNT_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REFS_FIELD_NUMBER: _ClassVar[int]
    PLAN_REF_FIELD_NUMBER: _ClassVar[int]
    WINDOW_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_IN_WINDOW_FIELD_NUMBER: _ClassVar[int]
    INVOICED_FIELD_NUMBER: _ClassVar[int]
    workload_id: str
    endpoint_id: str
    workload_kind: _ledger_pb2.WorkloadKind
    instance_type: str
    worker_type: _ledger_pb2.WorkerType
    up_time: _timestamp_pb2.Timestamp
    ready_time: _timestamp_pb2.Timestamp
    stop_time: _timestamp_pb2.Timestamp
    stop_reason: _ledger_pb2.StopReason
    unit: str
    billed_units: int
    duration_seconds: str
    amount: str
    rules: _containers.RepeatedScalarFieldContainer[str]
    attribution: DisputeAttribution
    timeline: _containers.RepeatedCompositeFieldContainer[DisputeTimelineStep]
    units: _containers.RepeatedCompositeFieldContainer[DisputeUnitRun]
    parts: _containers.RepeatedCompositeFieldContainer[DisputeChargePart]
    requests: _containers.RepeatedCompositeFieldContainer[DisputeRequest]
    request_count: int
    explanation: str
    verdict: Verdict
    refs: _containers.RepeatedCompositeFieldContainer[DisputeEntryRef]
    plan_ref: DisputeEntryRef
    window_amount: str
    requests_in_window: int
    invoiced: _containers.RepeatedCompositeFieldContainer[DisputeInvoicedRange]
    def __init__(self, workload_id: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., workload_kind: _Optional[_Union[_ledger_pb2.WorkloadKind, str]] = ..., instance_type: _Optional[str] = ..., worker_type: _Optional[_Union[_ledger_pb2.WorkerType, str]] = ..., up_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ready_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stop_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stop_reason: _Optional[_Union[_ledger_pb2.StopReason, str]] = ..., unit: _Optional[str] = ..., billed_units: _Optional[int] = ..., duration_seconds: _Optional[str] = ..., amount: _Optional[str] = ..., rules: _Optional[_Iterable[str]] = ..., attribution: _Optional[_Union[DisputeAttribution, _Mapping]] = ..., timeline: _Optional[_Iterable[_Union[DisputeTimelineStep, _Mapping]]] = ..., units: _Optional[_Iterable[_Union[DisputeUnitRun, _Mapping]]] = ..., parts: _Optional[_Iterable[_Union[DisputeChargePart, _Mapping]]] = ..., requests: _Optional[_Iterable[_Union[DisputeRequest, _Mapping]]] = ..., request_count: _Optional[int] = ..., explanation: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., refs: _Optional[_Iterable[_Union[DisputeEntryRef, _Mapping]]] = ..., plan_ref: _Optional[_Union[DisputeEntryRef, _Mapping]] = ..., window_amount: _Optional[str] = ..., requests_in_window: _Optional[int] = ..., invoiced: _Optional[_Iterable[_Union[DisputeInvoicedRange, _Mapping]]] = ...) -> None: ...

class DisputeInvoicedRange(_message.Message):
    __slots__ = ("invoice_id", "invoice_ref", "first_unit_index", "count", "unit_price", "price_version", "amount", "reversal", "late", "explanation")
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    INVOICE_REF_FIELD_NUMBER: _ClassVar[int]
    FIRST_UNIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    PRICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REVERSAL_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    invoice_ref: DisputeEntryRef
    first_unit_index: int
    count: int
    unit_price: str
    price_version: int
    amount: str
    reversal: bool
    late: bool
    explanation: str
    def __init__(self, invoice_id: _Optional[str] = ..., invoice_ref: _Optional[_Union[DisputeEntryRef, _Mapping]] = ..., first_unit_index: _Optional[int] = ..., count: _Optional[int] = ..., unit_price: _Optional[str] = ..., price_version: _Optional[int] = ..., amount: _Optional[str] = ..., reversal: _Optional[bool] = ..., late: _Optional[bool] = ..., explanation: _Optional[str] = ...) -> None: ...

class DisputeAttribution(_message.Message):
    __slots__ = ("cold_start_seconds", "serving_seconds", "idle_seconds", "rounding_seconds", "cold_start_amount", "serving_amount", "idle_amount", "rounding_amount")
    COLD_START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SERVING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    IDLE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COLD_START_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    SERVING_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    IDLE_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    cold_start_seconds: str
    serving_seconds: str
    idle_seconds: str
    rounding_seconds: str
    cold_start_amount: str
    serving_amount: str
    idle_amount: str
    rounding_amount: str
    def __init__(self, cold_start_seconds: _Optional[str] = ..., serving_seconds: _Optional[str] = ..., idle_seconds: _Optional[str] = ..., rounding_seconds: _Optional[str] = ..., cold_start_amount: _Optional[str] = ..., serving_amount: _Optional[str] = ..., idle_amount: _Optional[str] = ..., rounding_amount: _Optional[str] = ...) -> None: ...

class DisputeChargePart(_message.Message):
    __slots__ = ("name", "seconds", "amount", "rules", "explanation")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    seconds: str
    amount: str
    rules: _containers.RepeatedScalarFieldContainer[str]
    explanation: str
    def __init__(self, name: _Optional[str] = ..., seconds: _Optional[str] = ..., amount: _Optional[str] = ..., rules: _Optional[_Iterable[str]] = ..., explanation: _Optional[str] = ...) -> None: ...

class DisputeTimelineStep(_message.Message):
    __slots__ = ("occur_time", "event_type", "request_id", "stop_reason", "verdict", "rule", "explanation", "ref")
    OCCUR_TIME_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    occur_time: _timestamp_pb2.Timestamp
    event_type: _ledger_pb2.EventType
    request_id: str
    stop_reason: _ledger_pb2.StopReason
    verdict: Verdict
    rule: str
    explanation: str
    ref: DisputeEntryRef
    def __init__(self, occur_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_type: _Optional[_Union[_ledger_pb2.EventType, str]] = ..., request_id: _Optional[str] = ..., stop_reason: _Optional[_Union[_ledger_pb2.StopReason, str]] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., rule: _Optional[str] = ..., explanation: _Optional[str] = ..., ref: _Optional[_Union[DisputeEntryRef, _Mapping]] = ...) -> None: ...

class DisputeInvoiceCoverage(_message.Message):
    __slots__ = ("invoiced", "invoice_id", "invoice_ref", "late", "explanation")
    INVOICED_FIELD_NUMBER: _ClassVar[int]
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    INVOICE_REF_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    invoiced: bool
    invoice_id: str
    invoice_ref: DisputeEntryRef
    late: bool
    explanation: str
    def __init__(self, invoiced: _Optional[bool] = ..., invoice_id: _Optional[str] = ..., invoice_ref: _Optional[_Union[DisputeEntryRef, _Mapping]] = ..., late: _Optional[bool] = ..., explanation: _Optional[str] = ...) -> None: ...

class DisputeUnitRun(_message.Message):
    __slots__ = ("first_unit_index", "count", "unit_seconds", "first_unit_start_time", "price_version", "price_ref", "rate_per_second", "unit_price", "amount", "invoice", "explanation")
    FIRST_UNIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    UNIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FIRST_UNIT_START_TIME_FIELD_NUMBER: _ClassVar[int]
    PRICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PRICE_REF_FIELD_NUMBER: _ClassVar[int]
    RATE_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    first_unit_index: int
    count: int
    unit_seconds: int
    first_unit_start_time: _timestamp_pb2.Timestamp
    price_version: int
    price_ref: DisputeEntryRef
    rate_per_second: str
    unit_price: str
    amount: str
    invoice: DisputeInvoiceCoverage
    explanation: str
    def __init__(self, first_unit_index: _Optional[int] = ..., count: _Optional[int] = ..., unit_seconds: _Optional[int] = ..., first_unit_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., price_version: _Optional[int] = ..., price_ref: _Optional[_Union[DisputeEntryRef, _Mapping]] = ..., rate_per_second: _Optional[str] = ..., unit_price: _Optional[str] = ..., amount: _Optional[str] = ..., invoice: _Optional[_Union[DisputeInvoiceCoverage, _Mapping]] = ..., explanation: _Optional[str] = ...) -> None: ...

class DisputeRequest(_message.Message):
    __slots__ = ("request_id", "workload_id", "endpoint_id", "start_time", "finish_time", "in_flight_start_time", "in_flight_end_time", "attributed_seconds", "attributed_amount", "attributed_amount_exact", "attributed_amount_fraction", "rules", "explanation", "refs", "killed_by", "attributed_seconds_fraction")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_START_TIME_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_END_TIME_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTED_AMOUNT_EXACT_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTED_AMOUNT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    REFS_FIELD_NUMBER: _ClassVar[int]
    KILLED_BY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTED_SECONDS_FRACTION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    workload_id: str
    endpoint_id: str
    start_time: _timestamp_pb2.Timestamp
    finish_time: _timestamp_pb2.Timestamp
    in_flight_start_time: _timestamp_pb2.Timestamp
    in_flight_end_time: _timestamp_pb2.Timestamp
    attributed_seconds: str
    attributed_amount: str
    attributed_amount_exact: bool
    attributed_amount_fraction: str
    rules: _containers.RepeatedScalarFieldContainer[str]
    explanation: str
    refs: _containers.RepeatedCompositeFieldContainer[DisputeEntryRef]
    killed_by: _ledger_pb2.StopReason
    attributed_seconds_fraction: str
    def __init__(self, request_id: _Optional[str] = ..., workload_id: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., in_flight_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., in_flight_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attributed_seconds: _Optional[str] = ..., attributed_amount: _Optional[str] = ..., attributed_amount_exact: _Optional[bool] = ..., attributed_amount_fraction: _Optional[str] = ..., rules: _Optional[_Iterable[str]] = ..., explanation: _Optional[str] = ..., refs: _Optional[_Iterable[_Union[DisputeEntryRef, _Mapping]]] = ..., killed_by: _Optional[_Union[_ledger_pb2.StopReason, str]] = ..., attributed_seconds_fraction: _Optional[str] = ...) -> None: ...

class DisputeZeroLine(_message.Message):
    __slots__ = ("rule", "event_type", "workload_id", "start_time", "end_time", "explanation", "refs", "verdict", "amount")
    RULE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    REFS_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    rule: str
    event_type: _ledger_pb2.EventType
    workload_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    explanation: str
    refs: _containers.RepeatedCompositeFieldContainer[DisputeEntryRef]
    verdict: Verdict
    amount: str
    def __init__(self, rule: _Optional[str] = ..., event_type: _Optional[_Union[_ledger_pb2.EventType, str]] = ..., workload_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., explanation: _Optional[str] = ..., refs: _Optional[_Iterable[_Union[DisputeEntryRef, _Mapping]]] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., amount: _Optional[str] = ...) -> None: ...

class DisputeStorageLine(_message.Message):
    __slots__ = ("workload_id", "storage_kind", "volume_id", "gigabytes", "interval_seconds", "start_time", "end_time", "rule", "amount", "explanation", "ref", "invoice", "amount_fraction", "gigabyte_seconds", "first_tier_gigabyte_seconds", "beyond_tier_gigabyte_seconds")
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    STORAGE_KIND_FIELD_NUMBER: _ClassVar[int]
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    GIGABYTES_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    GIGABYTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FIRST_TIER_GIGABYTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BEYOND_TIER_GIGABYTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    workload_id: str
    storage_kind: _ledger_pb2.StorageKind
    volume_id: str
    gigabytes: str
    interval_seconds: int
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    rule: str
    amount: str
    explanation: str
    ref: DisputeEntryRef
    invoice: DisputeInvoiceCoverage
    amount_fraction: str
    gigabyte_seconds: str
    first_tier_gigabyte_seconds: str
    beyond_tier_gigabyte_seconds: str
    def __init__(self, workload_id: _Optional[str] = ..., storage_kind: _Optional[_Union[_ledger_pb2.StorageKind, str]] = ..., volume_id: _Optional[str] = ..., gigabytes: _Optional[str] = ..., interval_seconds: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rule: _Optional[str] = ..., amount: _Optional[str] = ..., explanation: _Optional[str] = ..., ref: _Optional[_Union[DisputeEntryRef, _Mapping]] = ..., invoice: _Optional[_Union[DisputeInvoiceCoverage, _Mapping]] = ..., amount_fraction: _Optional[str] = ..., gigabyte_seconds: _Optional[str] = ..., first_tier_gigabyte_seconds: _Optional[str] = ..., beyond_tier_gigabyte_seconds: _Optional[str] = ...) -> None: ...

class DisputeAnomaly(_message.Message):
    __slots__ = ("workload_id", "event_type", "occur_time", "reason", "ref")
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    OCCUR_TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    workload_id: str
    event_type: _ledger_pb2.EventType
    occur_time: _timestamp_pb2.Timestamp
    reason: str
    ref: DisputeEntryRef
    def __init__(self, workload_id: _Optional[str] = ..., event_type: _Optional[_Union[_ledger_pb2.EventType, str]] = ..., occur_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., ref: _Optional[_Union[DisputeEntryRef, _Mapping]] = ...) -> None: ...

class DisputeAdjustment(_message.Message):
    __slots__ = ("ticket", "amount", "reason", "ref", "corrects", "invoice", "explanation")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    CORRECTS_FIELD_NUMBER: _ClassVar[int]
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    ticket: str
    amount: str
    reason: str
    ref: DisputeEntryRef
    corrects: _containers.RepeatedCompositeFieldContainer[DisputeEntryRef]
    invoice: DisputeInvoiceCoverage
    explanation: str
    def __init__(self, ticket: _Optional[str] = ..., amount: _Optional[str] = ..., reason: _Optional[str] = ..., ref: _Optional[_Union[DisputeEntryRef, _Mapping]] = ..., corrects: _Optional[_Iterable[_Union[DisputeEntryRef, _Mapping]]] = ..., invoice: _Optional[_Union[DisputeInvoiceCoverage, _Mapping]] = ..., explanation: _Optional[str] = ...) -> None: ...

class DisputeEvidence(_message.Message):
    __slots__ = ("ref", "kind", "event_type", "occur_time", "workload_id", "request_id", "description")
    REF_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    OCCUR_TIME_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ref: DisputeEntryRef
    kind: _ledger_pb2.EntryKind
    event_type: _ledger_pb2.EventType
    occur_time: _timestamp_pb2.Timestamp
    workload_id: str
    request_id: str
    description: str
    def __init__(self, ref: _Optional[_Union[DisputeEntryRef, _Mapping]] = ..., kind: _Optional[_Union[_ledger_pb2.EntryKind, str]] = ..., event_type: _Optional[_Union[_ledger_pb2.EventType, str]] = ..., occur_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., workload_id: _Optional[str] = ..., request_id: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class DisputeTotals(_message.Message):
    __slots__ = ("sessions_amount", "storage_amount", "adjustments_amount", "total_amount", "window_compute_amount", "window_storage_amount", "storage_amount_fraction", "total_amount_fraction", "window_storage_amount_fraction")
    SESSIONS_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    STORAGE_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ADJUSTMENTS_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_COMPUTE_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_STORAGE_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    STORAGE_AMOUNT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    TOTAL_AMOUNT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_STORAGE_AMOUNT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    sessions_amount: str
    storage_amount: str
    adjustments_amount: str
    total_amount: str
    window_compute_amount: str
    window_storage_amount: str
    storage_amount_fraction: str
    total_amount_fraction: str
    window_storage_amount_fraction: str
    def __init__(self, sessions_amount: _Optional[str] = ..., storage_amount: _Optional[str] = ..., adjustments_amount: _Optional[str] = ..., total_amount: _Optional[str] = ..., window_compute_amount: _Optional[str] = ..., window_storage_amount: _Optional[str] = ..., storage_amount_fraction: _Optional[str] = ..., total_amount_fraction: _Optional[str] = ..., window_storage_amount_fraction: _Optional[str] = ...) -> None: ...

class DisputeInvoice(_message.Message):
    __slots__ = ("invoice_id", "ref", "issue_time", "period_start_time", "period_end_time", "total_amount", "credits_applied", "amount_due")
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    ISSUE_TIME_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_TIME_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_TIME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CREDITS_APPLIED_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_DUE_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    ref: DisputeEntryRef
    issue_time: _timestamp_pb2.Timestamp
    period_start_time: _timestamp_pb2.Timestamp
    period_end_time: _timestamp_pb2.Timestamp
    total_amount: str
    credits_applied: str
    amount_due: str
    def __init__(self, invoice_id: _Optional[str] = ..., ref: _Optional[_Union[DisputeEntryRef, _Mapping]] = ..., issue_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., total_amount: _Optional[str] = ..., credits_applied: _Optional[str] = ..., amount_due: _Optional[str] = ...) -> None: ...

class DisputeProof(_message.Message):
    __slots__ = ("log_id", "tree_size", "root_hash", "signed_note", "bundle_json", "unproven_sequences")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ROOT_HASH_FIELD_NUMBER: _ClassVar[int]
    SIGNED_NOTE_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_JSON_FIELD_NUMBER: _ClassVar[int]
    UNPROVEN_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    log_id: str
    tree_size: int
    root_hash: bytes
    signed_note: str
    bundle_json: str
    unproven_sequences: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, log_id: _Optional[str] = ..., tree_size: _Optional[int] = ..., root_hash: _Optional[bytes] = ..., signed_note: _Optional[str] = ..., bundle_json: _Optional[str] = ..., unproven_sequences: _Optional[_Iterable[int]] = ...) -> None: ...

class AdjustChargesRequest(_message.Message):
    __slots__ = ("org_id", "ticket", "amount", "reason", "corrects", "request_id")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CORRECTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    ticket: str
    amount: str
    reason: str
    corrects: _containers.RepeatedCompositeFieldContainer[DisputeEntryRef]
    request_id: str
    def __init__(self, org_id: _Optional[str] = ..., ticket: _Optional[str] = ..., amount: _Optional[str] = ..., reason: _Optional[str] = ..., corrects: _Optional[_Iterable[_Union[DisputeEntryRef, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class AdjustChargesResponse(_message.Message):
    __slots__ = ("adjustment", "duplicate")
    ADJUSTMENT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    adjustment: DisputeAdjustment
    duplicate: bool
    def __init__(self, adjustment: _Optional[_Union[DisputeAdjustment, _Mapping]] = ..., duplicate: _Optional[bool] = ...) -> None: ...
