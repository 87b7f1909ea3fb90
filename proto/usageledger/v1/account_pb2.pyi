import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Granularity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRANULARITY_UNSPECIFIED: _ClassVar[Granularity]
    GRANULARITY_PER_MINUTE: _ClassVar[Granularity]
    GRANULARITY_PER_SECOND: _ClassVar[Granularity]

class AccountState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNT_STATE_UNSPECIFIED: _ClassVar[AccountState]
    ACCOUNT_STATE_ACTIVE: _ClassVar[AccountState]
    ACCOUNT_STATE_SPEND_LIMIT_EXCEEDED: _ClassVar[AccountState]
    ACCOUNT_STATE_DEACTIVATED: _ClassVar[AccountState]

class AccountStateChangeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNT_STATE_CHANGE_TYPE_UNSPECIFIED: _ClassVar[AccountStateChangeType]
    ACCOUNT_STATE_CHANGE_TYPE_SPEND_LIMIT_EXCEEDED: _ClassVar[AccountStateChangeType]
    ACCOUNT_STATE_CHANGE_TYPE_SPEND_LIMIT_CLEARED: _ClassVar[AccountStateChangeType]
    ACCOUNT_STATE_CHANGE_TYPE_DEACTIVATED: _ClassVar[AccountStateChangeType]
    ACCOUNT_STATE_CHANGE_TYPE_REACTIVATED: _ClassVar[AccountStateChangeType]
    ACCOUNT_STATE_CHANGE_TYPE_PAYMENT_METHOD_SET: _ClassVar[AccountStateChangeType]
    ACCOUNT_STATE_CHANGE_TYPE_PAYMENT_METHOD_CLEARED: _ClassVar[AccountStateChangeType]

class InvoiceCadence(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INVOICE_CADENCE_UNSPECIFIED: _ClassVar[InvoiceCadence]
    INVOICE_CADENCE_THRESHOLD_OR_MONTH_END: _ClassVar[InvoiceCadence]
    INVOICE_CADENCE_MONTHLY: _ClassVar[InvoiceCadence]
GRANULARITY_UNSPECIFIED: Granularity
GRANULARITY_PER_MINUTE: Granularity
GRANULARITY_PER_SECOND: Granularity
ACCOUNT_STATE_UNSPECIFIED: AccountState
ACCOUNT_STATE_ACTIVE: AccountState
ACCOUNT_STATE_SPEND_LIMIT_EXCEEDED: AccountState
ACCOUNT_STATE_DEACTIVATED: AccountState
ACCOUNT_STATE_CHANGE_TYPE_UNSPECIFIED: AccountStateChangeType
ACCOUNT_STATE_CHANGE_TYPE_SPEND_LIMIT_EXCEEDED: AccountStateChangeType
ACCOUNT_STATE_CHANGE_TYPE_SPEND_LIMIT_CLEARED: AccountStateChangeType
ACCOUNT_STATE_CHANGE_TYPE_DEACTIVATED: AccountStateChangeType
ACCOUNT_STATE_CHANGE_TYPE_REACTIVATED: AccountStateChangeType
ACCOUNT_STATE_CHANGE_TYPE_PAYMENT_METHOD_SET: AccountStateChangeType
ACCOUNT_STATE_CHANGE_TYPE_PAYMENT_METHOD_CLEARED: AccountStateChangeType
INVOICE_CADENCE_UNSPECIFIED: InvoiceCadence
INVOICE_CADENCE_THRESHOLD_OR_MONTH_END: InvoiceCadence
INVOICE_CADENCE_MONTHLY: InvoiceCadence

class AccountSettings(_message.Message):
    __slots__ = ("granularity", "discount_percent", "spend_limit_per_hour", "monthly_after_paid_invoices")
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    SPEND_LIMIT_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_AFTER_PAID_INVOICES_FIELD_NUMBER: _ClassVar[int]
    granularity: Granularity
    discount_percent: str
    spend_limit_per_hour: str
    monthly_after_paid_invoices: int
    def __init__(self, granularity: _Optional[_Union[Granularity, str]] = ..., discount_percent: _Optional[str] = ..., spend_limit_per_hour: _Optional[str] = ..., monthly_after_paid_invoices: _Optional[int] = ...) -> None: ...

class SetAccountSettingsRequest(_message.Message):
    __slots__ = ("org_id", "effective_time", "granularity", "discount_percent", "spend_limit_per_hour", "monthly_after_paid_invoices", "note")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    SPEND_LIMIT_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_AFTER_PAID_INVOICES_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    effective_time: _timestamp_pb2.Timestamp
    granularity: Granularity
    discount_percent: str
    spend_limit_per_hour: str
    monthly_after_paid_invoices: int
    note: str
    def __init__(self, org_id: _Optional[str] = ..., effective_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., granularity: _Optional[_Union[Granularity, str]] = ..., discount_percent: _Optional[str] = ..., spend_limit_per_hour: _Optional[str] = ..., monthly_after_paid_invoices: _Optional[int] = ..., note: _Optional[str] = ...) -> None: ...

class SetAccountSettingsResponse(_message.Message):
    __slots__ = ("log_id", "sequence", "settings")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    log_id: str
    sequence: int
    settings: AccountSettings
    def __init__(self, log_id: _Optional[str] = ..., sequence: _Optional[int] = ..., settings: _Optional[_Union[AccountSettings, _Mapping]] = ...) -> None: ...

class GetAccountSettingsRequest(_message.Message):
    __slots__ = ("org_id", "at_time")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    AT_TIME_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    at_time: _timestamp_pb2.Timestamp
    def __init__(self, org_id: _Optional[str] = ..., at_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetAccountSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: AccountSettings
    def __init__(self, settings: _Optional[_Union[AccountSettings, _Mapping]] = ...) -> None: ...

class AccountStateChange(_message.Message):
    __slots__ = ("org_id", "sequence", "type", "change_time", "rule", "explanation", "figures")
    class FiguresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    FIGURES_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    sequence: int
    type: AccountStateChangeType
    change_time: _timestamp_pb2.Timestamp
    rule: str
    explanation: str
    figures: _containers.ScalarMap[str, str]
    def __init__(self, org_id: _Optional[str] = ..., sequence: _Optional[int] = ..., type: _Optional[_Union[AccountStateChangeType, str]] = ..., change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rule: _Optional[str] = ..., explanation: _Optional[str] = ..., figures: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetAccountStateRequest(_message.Message):
    __slots__ = ("org_id",)
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    def __init__(self, org_id: _Optional[str] = ...) -> None: ...

class GetAccountStateResponse(_message.Message):
    __slots__ = ("org_id", "state", "spend_limit_exceeded", "deactivated", "payment_method_on_file", "payment_method_reference", "credit_left", "open_period_total", "open_period_amount_due", "open_period_start_time", "hourly_spend", "spend_limit_per_hour", "unpaid_amount_due", "cadence", "discount_percent", "currency_code", "as_of_time", "last_change", "settled_through_time")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SPEND_LIMIT_EXCEEDED_FIELD_NUMBER: _ClassVar[int]
    DEACTIVATED_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_METHOD_ON_FILE_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_METHOD_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CREDIT_LEFT_FIELD_NUMBER: _ClassVar[int]
    OPEN_PERIOD_TOTAL_FIELD_NUMBER: _ClassVar[int]
    OPEN_PERIOD_AMOUNT_DUE_FIELD_NUMBER: _ClassVar[int]
    OPEN_PERIOD_START_TIME_FIELD_NUMBER: _ClassVar[int]
    HOURLY_SPEND_FIELD_NUMBER: _ClassVar[int]
    SPEND_LIMIT_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    UNPAID_AMOUNT_DUE_FIELD_NUMBER: _ClassVar[int]
    CADENCE_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_CHANGE_FIELD_NUMBER: _ClassVar[int]
    SETTLED_THROUGH_TIME_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    state: AccountState
    spend_limit_exceeded: bool
    deactivated: bool
    payment_method_on_file: bool
    payment_method_reference: str
    credit_left: str
    open_period_total: str
    open_period_amount_due: str
    open_period_start_time: _timestamp_pb2.Timestamp
    hourly_spend: str
    spend_limit_per_hour: str
    unpaid_amount_due: str
    cadence: InvoiceCadence
    discount_percent: str
    currency_code: str
    as_of_time: _timestamp_pb2.Timestamp
    last_change: AccountStateChange
    settled_through_time: _timestamp_pb2.Timestamp
    def __init__(self, org_id: _Optional[str] = ..., state: _Optional[_Union[AccountState, str]] = ..., spend_limit_exceeded: _Optional[bool] = ..., deactivated: _Optional[bool] = ..., payment_method_on_file: _Optional[bool] = ..., payment_method_reference: _Optional[str] = ..., credit_left: _Optional[str] = ..., open_period_total: _Optional[str] = ..., open_period_amount_due: _Optional[str] = ..., open_period_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., hourly_spend: _Optional[str] = ..., spend_limit_per_hour: _Optional[str] = ..., unpaid_amount_due: _Optional[str] = ..., cadence: _Optional[_Union[InvoiceCadence, str]] = ..., discount_percent: _Optional[str] = ..., currency_code: _Optional[str] = ..., as_of_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_change: _Optional[_Union[AccountStateChange, _Mapping]] = ..., settled_through_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WatchAccountStateRequest(_message.Message):
    __slots__ = ("org_id", "start_sequence")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    START_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    start_sequence: int
    def __init__(self, org_id: _Optional[str] = ..., start_sequence: _Optional[int] = ...) -> None: ...

class WatchAccountStateResponse(_message.Message):
    __slots__ = ("state", "change")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    state: AccountState
    change: AccountStateChange
    def __init__(self, state: _Optional[_Union[AccountState, str]] = ..., change: _Optional[_Union[AccountStateChange, _Mapping]] = ...) -> None: ...

class SetPaymentMethodRequest(_message.Message):
    __slots__ = ("org_id", "reference")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    reference: str
    def __init__(self, org_id: _Optional[str] = ..., reference: _Optional[str] = ...) -> None: ...

class SetPaymentMethodResponse(_message.Message):
    __slots__ = ("changed", "change", "state")
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    change: AccountStateChange
    state: AccountState
    def __init__(self, changed: _Optional[bool] = ..., change: _Optional[_Union[AccountStateChange, _Mapping]] = ..., state: _Optional[_Union[AccountState, str]] = ...) -> None: ...

class ClearPaymentMethodRequest(_message.Message):
    __slots__ = ("org_id",)
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    def __init__(self, org_id: _Optional[str] = ...) -> None: ...

class ClearPaymentMethodResponse(_message.Message):
    __slots__ = ("changed", "change", "state")
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    change: AccountStateChange
    state: AccountState
    def __init__(self, changed: _Optional[bool] = ..., change: _Optional[_Union[AccountStateChange, _Mapping]] = ..., state: _Optional[_Union[AccountState, str]] = ...) -> None: ...
