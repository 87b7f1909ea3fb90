"""Request guard: undecodable requests become INVALID_ARGUMENT naming the field, expired calls are not executed.

Also home to `rewrap`, the one helper the server's interceptors use to wrap a method handler's behaviour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message as pb_message
from google.protobuf.unknown_fields import UnknownFieldSet

from ledger.errors import FieldViolation, InvalidInput
from server.faults import contained
from wire.status import to_status

Behavior = Callable[[Any, grpc.ServicerContext], Any]
# wrap(behavior, request_streaming, response_streaming) -> the behaviour to run instead
BehaviorWrapper = Callable[[Behavior, bool, bool], Behavior]
Continuation = Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None]

_FACTORIES = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


def rewrap(
    handler: grpc.RpcMethodHandler,
    wrap: BehaviorWrapper,
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """The same method handler, of whichever of the four kinds, with its behaviour passed through `wrap`."""
    kind = (bool(handler.request_streaming), bool(handler.response_streaming))
    attribute, factory = _FACTORIES[kind]
    return factory(
        wrap(getattr(handler, attribute), *kind),
        request_deserializer=request_deserializer or handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class Undecodable:
    """Stands in for a request whose bytes do not parse, so the behaviour can answer it properly."""

    __slots__ = ("violation",)

    def __init__(self, violation: FieldViolation) -> None:
        self.violation = violation


class RequestGuard(grpc.ServerInterceptor):  # type: ignore[misc]
    """Runs first on every call.

    - A request the protobuf runtime cannot parse (invalid UTF-8 in a string field, truncated or malformed wire
      data) is answered INVALID_ARGUMENT with a BadRequest naming the field where it can be found, instead of the
      INTERNAL that grpcio answers when a deserializer raises.
    - A request holding a field this server does not know (or a known one with the wrong wire type) is refused
      INVALID_ARGUMENT naming it, as is a uint64 field beyond the store's signed 64-bit range: the protobuf
      runtime would keep the one silently aside and a database would answer the other with an error of its own.
    - A call whose deadline has already passed when a worker picks it up is answered DEADLINE_EXCEEDED without
      running: its client has given up, and an append it never hears about would only be retried.
    - Whatever the handler lets escape is answered by server.faults (UNAVAILABLE for storage faults), never
      grpcio's UNKNOWN.
    """

    def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        deserializer = handler.request_deserializer
        return rewrap(handler, _guarded, _tolerant(deserializer) if deserializer is not None else None)


def _tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    message_type = getattr(deserializer, "__self__", None)
    descriptor = getattr(message_type, "DESCRIPTOR", None)

    def deserialize(data: bytes) -> Any:
        try:
            message = deserializer(data)
        except (pb_message.DecodeError, ValueError, TypeError):
            return Undecodable(undecodable_violation(descriptor, data))
        violation = request_violation(message, len(data), lambda: deserializer(data))
        return message if violation is None else Undecodable(violation)

    return deserialize


def _guarded(behavior: Behavior, request_streaming: bool, response_streaming: bool) -> Behavior:
    behavior = contained(behavior, response_streaming)

    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        if context.time_remaining() <= 0:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the call's deadline passed before it was started")
        if request_streaming:
            request = _checked_stream(request, context)
        elif isinstance(request, Undecodable):
            context.abort_with_status(to_status(InvalidInput([request.violation])))
        return behavior(request, context)

    return guarded


def _checked_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    for index, request in enumerate(requests):
        if isinstance(request, Undecodable):
            violation = request.violation
            field = f"messages[{index}]" + (f".{violation.field}" if violation.field != _WHOLE else "")
            context.abort_with_status(to_status(InvalidInput([FieldViolation(field, violation.description)])))
        yield request


# -- requests that parse but hold what the server must not take ------------------------------------------------------

_INT64_MAX = 2**63 - 1


def request_violation(message: Any, size: int, reparse: Callable[[], Any]) -> FieldViolation | None:
    """The first unknown field or out-of-range uint64 of a parsed request, or None. Drops no known data.

    Unknown fields are found cheaply: with them discarded (in C), a request re-serializes to no more than the bytes
    of its known fields, so a size equal to the wire size proves there were none. Otherwise (unknown fields, or
    merely a non-canonical encoding) a fresh parse is walked to name the first one.
    """
    message.DiscardUnknownFields()
    if message.ByteSize() != size:
        path = _unknown_field_path(reparse(), "", 0)
        if path is not None:
            return FieldViolation(
                path, "is not a field of this API version (or has the wrong wire type); refused", "UNKNOWN_FIELD"
            )
    return _out_of_range(message, "")


def _unknown_field_path(message: Any, prefix: str, depth: int) -> str | None:
    unknown = UnknownFieldSet(message)
    if len(unknown):
        return f"{prefix}field {unknown[0].field_number}"
    if depth > _MAX_DEPTH:
        return None
    for field, value in message.ListFields():
        if field.type != pb_descriptor.FieldDescriptor.TYPE_MESSAGE or _is_map(field):
            continue
        items = enumerate(value) if _is_repeated(field) else [(None, value)]
        for index, item in items:
            name = field.name if index is None else f"{field.name}[{index}]"
            found = _unknown_field_path(item, f"{prefix}{name}.", depth + 1)
            if found is not None:
                return found
    return None


def _out_of_range(message: Any, prefix: str) -> FieldViolation | None:
    """A uint64 above 2^63 - 1 (sequences, sizes, indexes are signed 64-bit columns): none can exist or ever will."""
    plan = _uint64_plan(message.DESCRIPTOR)
    if not plan:
        return None
    for field, value in message.ListFields():
        if field.name not in plan:
            continue
        if field.type == pb_descriptor.FieldDescriptor.TYPE_MESSAGE:
            items = enumerate(value) if _is_repeated(field) else [(None, value)]
            for index, item in items:
                name = field.name if index is None else f"{field.name}[{index}]"
                found = _out_of_range(item, f"{prefix}{name}.")
                if found is not None:
                    return found
            continue
        values = value if _is_repeated(field) else [value]
        for index, number in enumerate(values):
            if number > _INT64_MAX:
                name = f"{field.name}[{index}]" if _is_repeated(field) else field.name
                return FieldViolation(
                    f"{prefix}{name}", f"must be at most {_INT64_MAX} (2^63 - 1)", "NUMBER_OUT_OF_RANGE"
                )
    return None


_UINT64_PLANS: dict[str, frozenset[str]] = {}
_UINT64_TYPES = (pb_descriptor.FieldDescriptor.TYPE_UINT64, pb_descriptor.FieldDescriptor.TYPE_FIXED64)


def _uint64_plan(descriptor: pb_descriptor.Descriptor) -> frozenset[str]:
    """Names of the fields of `descriptor` that are uint64 or messages holding one (at any depth)."""
    found = _UINT64_PLANS.get(descriptor.full_name)
    if found is None:
        _UINT64_PLANS[descriptor.full_name] = frozenset()  # a recursive message type ends here
        names = set()
        for field in descriptor.fields:
            if field.type in _UINT64_TYPES or (
                field.message_type is not None and not _is_map(field) and _uint64_plan(field.message_type)
            ):
                names.add(field.name)
        found = _UINT64_PLANS[descriptor.full_name] = frozenset(names)
    return found


def _is_map(field: Any) -> bool:
    message_type = field.message_type
    return message_type is not None and message_type.GetOptions().map_entry


# -- finding the bad field in bytes the protobuf runtime refused ----------------------------------------------------

_WHOLE = "<request>"


def undecodable_violation(descriptor: pb_descriptor.Descriptor | None, data: bytes) -> FieldViolation:
    """Walk the wire format by the message's descriptor to name the first string field that is not UTF-8."""
    name = descriptor.full_name if descriptor is not None else "request"
    if descriptor is not None:
        try:
            path = _invalid_utf8_path(descriptor, data, "", 0)
        except (IndexError, _Malformed):
            path = None
        if path is not None:
            return FieldViolation(
                path, "is not valid UTF-8 (proto3 string fields must be UTF-8; use bytes for binary)", "INVALID_UTF8"
            )
    return FieldViolation(
        _WHOLE, f"is not a well-formed serialized {name} (truncated or malformed wire data)", "MALFORMED_REQUEST"
    )


class _Malformed(Exception):
    pass


_MAX_DEPTH = 32


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise _Malformed


def _invalid_utf8_path(descriptor: pb_descriptor.Descriptor, data: bytes, prefix: str, depth: int) -> str | None:
    if depth > _MAX_DEPTH:
        return None
    seen: dict[int, int] = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, pos = _varint(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise _Malformed
            chunk = data[pos : pos + length]
            pos += length
            field = descriptor.fields_by_number.get(number)
            if field is None:
                continue
            name = field.name
            if _is_repeated(field):
                name = f"{name}[{seen.get(number, 0)}]"
                seen[number] = seen.get(number, 0) + 1
            if field.type == pb_descriptor.FieldDescriptor.TYPE_STRING:
                try:
                    chunk.decode("utf-8")
                except UnicodeDecodeError:
                    return prefix + name
            elif field.type == pb_descriptor.FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
                found = _invalid_utf8_path(field.message_type, chunk, f"{prefix}{name}.", depth + 1)
                if found is not None:
                    return found
        else:
            raise _Malformed  # groups are not used by proto3; 6 and 7 are not wire types
    return None


def _is_repeated(field: Any) -> bool:
    # `is_repeated` is the newer spelling; `label` is deprecated in recent protobuf releases.
    repeated = getattr(field, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return bool(field.label == pb_descriptor.FieldDescriptor.LABEL_REPEATED)
