import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
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
GRANULARITY_UNSPECIFIED: Granularity
GRANULARITY_PER_MINUTE: Granularity
GRANULARITY_PER_SECOND: Granularity

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
