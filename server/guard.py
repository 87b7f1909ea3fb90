"""Request guard: undecodable requests become INVALID_ARGUMENT naming the field, expired calls are not executed.

Also home to `rewrap`, the one helper the server's interceptors use to wrap a method handler's behaviour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message as pb_message

from ledger.errors import FieldViolation, InvalidInput
from server.errors import to_status

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
    - A call whose deadline has already passed when a worker picks it up is answered DEADLINE_EXCEEDED without
      running: its client has given up, and an append it never hears about would only be retried.
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
            return deserializer(data)
        except (pb_message.DecodeError, ValueError, TypeError):
            return Undecodable(undecodable_violation(descriptor, data))

    return deserialize


def _guarded(behavior: Behavior, request_streaming: bool, response_streaming: bool) -> Behavior:
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
            return FieldViolation(path, "is not valid UTF-8 (proto3 string fields must be UTF-8; use bytes for binary)")
    return FieldViolation(_WHOLE, f"is not a well-formed serialized {name} (truncated or malformed wire data)")


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
