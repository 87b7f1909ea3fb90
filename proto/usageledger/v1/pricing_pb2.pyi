import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InstanceRate(_message.Message):
    __slots__ = ("instance_type", "flex_per_second", "active_per_second")
    INSTANCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    FLEX_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    instance_type: str
    flex_per_second: str
    active_per_second: str
    def __init__(self, instance_type: _Optional[str] = ..., flex_per_second: _Optional[str] = ..., active_per_second: _Optional[str] = ...) -> None: ...

class PriceBook(_message.Message):
    __slots__ = ("version", "effective_time", "rates", "note", "currency_code")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    RATES_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    version: int
    effective_time: _timestamp_pb2.Timestamp
    rates: _containers.RepeatedCompositeFieldContainer[InstanceRate]
    note: str
    currency_code: str
    def __init__(self, version: _Optional[int] = ..., effective_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rates: _Optional[_Iterable[_Union[InstanceRate, _Mapping]]] = ..., note: _Optional[str] = ..., currency_code: _Optional[str] = ...) -> None: ...

class SetPriceBookRequest(_message.Message):
    __slots__ = ("effective_time", "rates", "note")
    EFFECTIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    RATES_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    effective_time: _timestamp_pb2.Timestamp
    rates: _containers.RepeatedCompositeFieldContainer[InstanceRate]
    note: str
    def __init__(self, effective_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rates: _Optional[_Iterable[_Union[InstanceRate, _Mapping]]] = ..., note: _Optional[str] = ...) -> None: ...

class SetPriceBookResponse(_message.Message):
    __slots__ = ("price_book",)
    PRICE_BOOK_FIELD_NUMBER: _ClassVar[int]
    price_book: PriceBook
    def __init__(self, price_book: _Optional[_Union[PriceBook, _Mapping]] = ...) -> None: ...

class GetPriceBookRequest(_message.Message):
    __slots__ = ("at_time",)
    AT_TIME_FIELD_NUMBER: _ClassVar[int]
    at_time: _timestamp_pb2.Timestamp
    def __init__(self, at_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetPriceBookResponse(_message.Message):
    __slots__ = ("price_book",)
    PRICE_BOOK_FIELD_NUMBER: _ClassVar[int]
    price_book: PriceBook
    def __init__(self, price_book: _Optional[_Union[PriceBook, _Mapping]] = ...) -> None: ...

class ListPriceBooksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPriceBooksResponse(_message.Message):
    __slots__ = ("price_books",)
    PRICE_BOOKS_FIELD_NUMBER: _ClassVar[int]
    price_books: _containers.RepeatedCompositeFieldContainer[PriceBook]
    def __init__(self, price_books: _Optional[_Iterable[_Union[PriceBook, _Mapping]]] = ...) -> None: ...
