import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from usageledger.v1 import account_pb2 as _account_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InvoiceTrigger(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INVOICE_TRIGGER_UNSPECIFIED: _ClassVar[InvoiceTrigger]
    INVOICE_TRIGGER_THRESHOLD: _ClassVar[InvoiceTrigger]
    INVOICE_TRIGGER_MONTH_END: _ClassVar[InvoiceTrigger]

class InvoiceLineKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INVOICE_LINE_KIND_UNSPECIFIED: _ClassVar[InvoiceLineKind]
    INVOICE_LINE_KIND_COMPUTE: _ClassVar[InvoiceLineKind]
    INVOICE_LINE_KIND_STORAGE: _ClassVar[InvoiceLineKind]
    INVOICE_LINE_KIND_DISCOUNT: _ClassVar[InvoiceLineKind]
    INVOICE_LINE_KIND_ADJUSTMENT: _ClassVar[InvoiceLineKind]
    INVOICE_LINE_KIND_CARRIED_BALANCE: _ClassVar[InvoiceLineKind]

class InvoiceView(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INVOICE_VIEW_UNSPECIFIED: _ClassVar[InvoiceView]
    INVOICE_VIEW_BASIC: _ClassVar[InvoiceView]
    INVOICE_VIEW_FULL: _ClassVar[InvoiceView]

class PaymentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_STATUS_UNSPECIFIED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_NOT_DUE: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_PENDING: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_PAID: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_FAILED: _ClassVar[PaymentStatus]

class PaymentOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_OUTCOME_UNSPECIFIED: _ClassVar[PaymentOutcome]
    PAYMENT_OUTCOME_SUCCEEDED: _ClassVar[PaymentOutcome]
    PAYMENT_OUTCOME_FAILED: _ClassVar[PaymentOutcome]
INVOICE_TRIGGER_UNSPECIFIED: InvoiceTrigger
INVOICE_TRIGGER_THRESHOLD: InvoiceTrigger
INVOICE_TRIGGER_MONTH_END: InvoiceTrigger
INVOICE_LINE_KIND_UNSPECIFIED: InvoiceLineKind
INVOICE_LINE_KIND_COMPUTE: InvoiceLineKind
INVOICE_LINE_KIND_STORAGE: InvoiceLineKind
INVOICE_LINE_KIND_DISCOUNT: InvoiceLineKind
INVOICE_LINE_KIND_ADJUSTMENT: InvoiceLineKind
INVOICE_LINE_KIND_CARRIED_BALANCE: InvoiceLineKind
INVOICE_VIEW_UNSPECIFIED: InvoiceView
INVOICE_VIEW_BASIC: InvoiceView
INVOICE_VIEW_FULL: InvoiceView
PAYMENT_STATUS_UNSPECIFIED: PaymentStatus
PAYMENT_STATUS_NOT_DUE: PaymentStatus
PAYMENT_STATUS_PENDING: PaymentStatus
PAYMENT_STATUS_PAID: PaymentStatus
PAYMENT_STATUS_FAILED: PaymentStatus
PAYMENT_OUTCOME_UNSPECIFIED: PaymentOutcome
PAYMENT_OUTCOME_SUCCEEDED: PaymentOutcome
PAYMENT_OUTCOME_FAILED: PaymentOutcome

class Credit(_message.Message):
    __slots__ = ("sequence", "amount", "used", "left", "reason", "grant_time", "expire_time", "expired", "request_id", "currency_code")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    LEFT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    GRANT_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    amount: str
    used: str
    left: str
    reason: str
    grant_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    expired: bool
    request_id: str
    currency_code: str
    def __init__(self, sequence: _Optional[int] = ..., amount: _Optional[str] = ..., used: _Optional[str] = ..., left: _Optional[str] = ..., reason: _Optional[str] = ..., grant_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expired: _Optional[bool] = ..., request_id: _Optional[str] = ..., currency_code: _Optional[str] = ...) -> None: ...

class GrantCreditRequest(_message.Message):
    __slots__ = ("org_id", "amount", "reason", "expire_time", "request_id")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    amount: str
    reason: str
    expire_time: _timestamp_pb2.Timestamp
    request_id: str
    def __init__(self, org_id: _Optional[str] = ..., amount: _Optional[str] = ..., reason: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GrantCreditResponse(_message.Message):
    __slots__ = ("credit", "duplicate")
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    credit: Credit
    duplicate: bool
    def __init__(self, credit: _Optional[_Union[Credit, _Mapping]] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class ListCreditsRequest(_message.Message):
    __slots__ = ("org_id", "page_size", "page_token")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    page_size: int
    page_token: str
    def __init__(self, org_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCreditsResponse(_message.Message):
    __slots__ = ("credits", "next_page_token", "credit_left", "currency_code")
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CREDIT_LEFT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    credits: _containers.RepeatedCompositeFieldContainer[Credit]
    next_page_token: str
    credit_left: str
    currency_code: str
    def __init__(self, credits: _Optional[_Iterable[_Union[Credit, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., credit_left: _Optional[str] = ..., currency_code: _Optional[str] = ...) -> None: ...

class InvoiceLine(_message.Message):
    __slots__ = ("kind", "description", "rule", "quantity", "unit", "unit_price", "price_unit", "quantity_divisor", "amount", "late", "reversal", "usage_start_time", "usage_end_time", "endpoint_id", "workload_kind", "instance_type", "worker_type", "storage_kind", "volume_id", "reference")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    PRICE_UNIT_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_DIVISOR_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    REVERSAL_FIELD_NUMBER: _ClassVar[int]
    USAGE_START_TIME_FIELD_NUMBER: _ClassVar[int]
    USAGE_END_TIME_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_KIND_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    WORKER_TYPE_FIELD_NUMBER: _ClassVar[int]
    STORAGE_KIND_FIELD_NUMBER: _ClassVar[int]
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    kind: InvoiceLineKind
    description: str
    rule: str
    quantity: str
    unit: str
    unit_price: str
    price_unit: str
    quantity_divisor: int
    amount: str
    late: bool
    reversal: bool
    usage_start_time: _timestamp_pb2.Timestamp
    usage_end_time: _timestamp_pb2.Timestamp
    endpoint_id: str
    workload_kind: str
    instance_type: str
    worker_type: str
    storage_kind: str
    volume_id: str
    reference: int
    def __init__(self, kind: _Optional[_Union[InvoiceLineKind, str]] = ..., description: _Optional[str] = ..., rule: _Optional[str] = ..., quantity: _Optional[str] = ..., unit: _Optional[str] = ..., unit_price: _Optional[str] = ..., price_unit: _Optional[str] = ..., quantity_divisor: _Optional[int] = ..., amount: _Optional[str] = ..., late: _Optional[bool] = ..., reversal: _Optional[bool] = ..., usage_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., usage_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., endpoint_id: _Optional[str] = ..., workload_kind: _Optional[str] = ..., instance_type: _Optional[str] = ..., worker_type: _Optional[str] = ..., storage_kind: _Optional[str] = ..., volume_id: _Optional[str] = ..., reference: _Optional[int] = ...) -> None: ...

class PricedUnits(_message.Message):
    __slots__ = ("first_unit_index", "end_unit_index", "unit_price", "price_version")
    FIRST_UNIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    END_UNIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    PRICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    first_unit_index: int
    end_unit_index: int
    unit_price: str
    price_version: int
    def __init__(self, first_unit_index: _Optional[int] = ..., end_unit_index: _Optional[int] = ..., unit_price: _Optional[str] = ..., price_version: _Optional[int] = ...) -> None: ...

class CoveredSession(_message.Message):
    __slots__ = ("workload_id", "up_sequence", "session_start_time", "unit_seconds", "first_unit_index", "end_unit_index", "reversal", "priced", "endpoint_id", "workload_kind", "instance_type", "worker_type")
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    UP_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SESSION_START_TIME_FIELD_NUMBER: _ClassVar[int]
    UNIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FIRST_UNIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    END_UNIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    REVERSAL_FIELD_NUMBER: _ClassVar[int]
    PRICED_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_KIND_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    WORKER_TYPE_FIELD_NUMBER: _ClassVar[int]
    workload_id: str
    up_sequence: int
    session_start_time: _timestamp_pb2.Timestamp
    unit_seconds: int
    first_unit_index: int
    end_unit_index: int
    reversal: bool
    priced: _containers.RepeatedCompositeFieldContainer[PricedUnits]
    endpoint_id: str
    workload_kind: str
    instance_type: str
    worker_type: str
    def __init__(self, workload_id: _Optional[str] = ..., up_sequence: _Optional[int] = ..., session_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., unit_seconds: _Optional[int] = ..., first_unit_index: _Optional[int] = ..., end_unit_index: _Optional[int] = ..., reversal: _Optional[bool] = ..., priced: _Optional[_Iterable[_Union[PricedUnits, _Mapping]]] = ..., endpoint_id: _Optional[str] = ..., workload_kind: _Optional[str] = ..., instance_type: _Optional[str] = ..., worker_type: _Optional[str] = ...) -> None: ...

class CreditApplication(_message.Message):
    __slots__ = ("credit_sequence", "amount")
    CREDIT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    credit_sequence: int
    amount: str
    def __init__(self, credit_sequence: _Optional[int] = ..., amount: _Optional[str] = ...) -> None: ...

class Invoice(_message.Message):
    __slots__ = ("org_id", "number", "log_id", "sequence", "entry_hash", "period_start_time", "period_end_time", "trigger", "cadence", "lines", "subtotal", "discount_percent", "discount", "total", "credits_applied", "credits_total", "amount_due", "balance_carried_forward", "covered_sessions", "covered_storage_sequences", "covered_adjustment_sequences", "carried_from_invoice", "currency_code", "payment_status", "payment_reference", "late_line_count", "settled_through_time", "issue_time", "grace", "rated_log_size")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_TIME_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_TIME_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    CADENCE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    CREDITS_APPLIED_FIELD_NUMBER: _ClassVar[int]
    CREDITS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_DUE_FIELD_NUMBER: _ClassVar[int]
    BALANCE_CARRIED_FORWARD_FIELD_NUMBER: _ClassVar[int]
    COVERED_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    COVERED_STORAGE_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    COVERED_ADJUSTMENT_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    CARRIED_FROM_INVOICE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_STATUS_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    LATE_LINE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SETTLED_THROUGH_TIME_FIELD_NUMBER: _ClassVar[int]
    ISSUE_TIME_FIELD_NUMBER: _ClassVar[int]
    GRACE_FIELD_NUMBER: _ClassVar[int]
    RATED_LOG_SIZE_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    number: int
    log_id: str
    sequence: int
    entry_hash: bytes
    period_start_time: _timestamp_pb2.Timestamp
    period_end_time: _timestamp_pb2.Timestamp
    trigger: InvoiceTrigger
    cadence: _account_pb2.InvoiceCadence
    lines: _containers.RepeatedCompositeFieldContainer[InvoiceLine]
    subtotal: str
    discount_percent: str
    discount: str
    total: str
    credits_applied: _containers.RepeatedCompositeFieldContainer[CreditApplication]
    credits_total: str
    amount_due: str
    balance_carried_forward: str
    covered_sessions: _containers.RepeatedCompositeFieldContainer[CoveredSession]
    covered_storage_sequences: _containers.RepeatedScalarFieldContainer[int]
    covered_adjustment_sequences: _containers.RepeatedScalarFieldContainer[int]
    carried_from_invoice: int
    currency_code: str
    payment_status: PaymentStatus
    payment_reference: str
    late_line_count: int
    settled_through_time: _timestamp_pb2.Timestamp
    issue_time: _timestamp_pb2.Timestamp
    grace: InvoiceGrace
    rated_log_size: int
    def __init__(self, org_id: _Optional[str] = ..., number: _Optional[int] = ..., log_id: _Optional[str] = ..., sequence: _Optional[int] = ..., entry_hash: _Optional[bytes] = ..., period_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trigger: _Optional[_Union[InvoiceTrigger, str]] = ..., cadence: _Optional[_Union[_account_pb2.InvoiceCadence, str]] = ..., lines: _Optional[_Iterable[_Union[InvoiceLine, _Mapping]]] = ..., subtotal: _Optional[str] = ..., discount_percent: _Optional[str] = ..., discount: _Optional[str] = ..., total: _Optional[str] = ..., credits_applied: _Optional[_Iterable[_Union[CreditApplication, _Mapping]]] = ..., credits_total: _Optional[str] = ..., amount_due: _Optional[str] = ..., balance_carried_forward: _Optional[str] = ..., covered_sessions: _Optional[_Iterable[_Union[CoveredSession, _Mapping]]] = ..., covered_storage_sequences: _Optional[_Iterable[int]] = ..., covered_adjustment_sequences: _Optional[_Iterable[int]] = ..., carried_from_invoice: _Optional[int] = ..., currency_code: _Optional[str] = ..., payment_status: _Optional[_Union[PaymentStatus, str]] = ..., payment_reference: _Optional[str] = ..., late_line_count: _Optional[int] = ..., settled_through_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., issue_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., grace: _Optional[_Union[InvoiceGrace, _Mapping]] = ..., rated_log_size: _Optional[int] = ...) -> None: ...

class InvoiceGrace(_message.Message):
    __slots__ = ("fired", "wall_clock_time", "grace_seconds")
    FIRED_FIELD_NUMBER: _ClassVar[int]
    WALL_CLOCK_TIME_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    fired: bool
    wall_clock_time: _timestamp_pb2.Timestamp
    grace_seconds: int
    def __init__(self, fired: _Optional[bool] = ..., wall_clock_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., grace_seconds: _Optional[int] = ...) -> None: ...

class CloseBillingPeriodRequest(_message.Message):
    __slots__ = ("org_id", "close_time")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    CLOSE_TIME_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    close_time: _timestamp_pb2.Timestamp
    def __init__(self, org_id: _Optional[str] = ..., close_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CloseBillingPeriodResponse(_message.Message):
    __slots__ = ("issued", "explanation", "cadence")
    ISSUED_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    CADENCE_FIELD_NUMBER: _ClassVar[int]
    issued: _containers.RepeatedCompositeFieldContainer[Invoice]
    explanation: str
    cadence: _account_pb2.InvoiceCadence
    def __init__(self, issued: _Optional[_Iterable[_Union[Invoice, _Mapping]]] = ..., explanation: _Optional[str] = ..., cadence: _Optional[_Union[_account_pb2.InvoiceCadence, str]] = ...) -> None: ...

class ListInvoicesRequest(_message.Message):
    __slots__ = ("org_id", "page_size", "page_token", "view")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    page_size: int
    page_token: str
    view: InvoiceView
    def __init__(self, org_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., view: _Optional[_Union[InvoiceView, str]] = ...) -> None: ...

class ListInvoicesResponse(_message.Message):
    __slots__ = ("invoices", "next_page_token")
    INVOICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    invoices: _containers.RepeatedCompositeFieldContainer[Invoice]
    next_page_token: str
    def __init__(self, invoices: _Optional[_Iterable[_Union[Invoice, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetInvoiceRequest(_message.Message):
    __slots__ = ("org_id", "number")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    number: int
    def __init__(self, org_id: _Optional[str] = ..., number: _Optional[int] = ...) -> None: ...

class GetInvoiceResponse(_message.Message):
    __slots__ = ("invoice",)
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    invoice: Invoice
    def __init__(self, invoice: _Optional[_Union[Invoice, _Mapping]] = ...) -> None: ...

class Payment(_message.Message):
    __slots__ = ("org_id", "sequence", "invoice_number", "outcome", "reference", "amount", "currency_code", "record_time")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    INVOICE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    RECORD_TIME_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    sequence: int
    invoice_number: int
    outcome: PaymentOutcome
    reference: str
    amount: str
    currency_code: str
    record_time: _timestamp_pb2.Timestamp
    def __init__(self, org_id: _Optional[str] = ..., sequence: _Optional[int] = ..., invoice_number: _Optional[int] = ..., outcome: _Optional[_Union[PaymentOutcome, str]] = ..., reference: _Optional[str] = ..., amount: _Optional[str] = ..., currency_code: _Optional[str] = ..., record_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecordPaymentRequest(_message.Message):
    __slots__ = ("org_id", "invoice_number", "outcome", "reference")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    INVOICE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    invoice_number: int
    outcome: PaymentOutcome
    reference: str
    def __init__(self, org_id: _Optional[str] = ..., invoice_number: _Optional[int] = ..., outcome: _Optional[_Union[PaymentOutcome, str]] = ..., reference: _Optional[str] = ...) -> None: ...

class RecordPaymentResponse(_message.Message):
    __slots__ = ("payment", "duplicate", "payment_status", "cadence")
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_STATUS_FIELD_NUMBER: _ClassVar[int]
    CADENCE_FIELD_NUMBER: _ClassVar[int]
    payment: Payment
    duplicate: bool
    payment_status: PaymentStatus
    cadence: _account_pb2.InvoiceCadence
    def __init__(self, payment: _Optional[_Union[Payment, _Mapping]] = ..., duplicate: _Optional[bool] = ..., payment_status: _Optional[_Union[PaymentStatus, str]] = ..., cadence: _Optional[_Union[_account_pb2.InvoiceCadence, str]] = ...) -> None: ...
