"""Mapping between protobuf messages and domain objects, kept in one place."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from google.protobuf.unknown_fields import UnknownFieldSet
from usageledger.v1 import ledger_pb2 as pb

from ledger.errors import FieldViolation, InvalidInput
from ledger.events import KNOWN_EVENT_FIELDS, UsageEvent, format_decimal
from ledger.log.entry import Entry, EntryKind, LogHead
from ledger.ports import Appended
from ledger.timeutil import parse_rfc3339_micros

# Proto field names differ from billing-rules.md's in one place: occurred_at is `occur_time` (AIP `*_time`).
PROTO_FIELD_NAMES = {"occurred_at": "occur_time"}


def _enum_names(enum: Any, prefix: str) -> dict[int, str | None]:
    """Number -> billing-rules.md name of each value of a proto enum; zero (`*_UNSPECIFIED`) -> None (absent)."""
    return {number: None if number == 0 else str(enum.Name(number))[len(prefix) :] for number in enum.values()}


# Looked up once here rather than through the enum wrappers for every field of every event on the ingest path.
_WORKLOAD_KINDS = _enum_names(pb.WorkloadKind, "WORKLOAD_KIND_")
_EVENT_TYPES = _enum_names(pb.EventType, "EVENT_TYPE_")
_WORKER_TYPES = _enum_names(pb.WorkerType, "WORKER_TYPE_")
_STOP_REASONS = _enum_names(pb.StopReason, "STOP_REASON_")
_STORAGE_KINDS = _enum_names(pb.StorageKind, "STORAGE_KIND_")


def _unknown_enum_value(value: int) -> str:
    # A value this build does not know (proto3 enums are open) is passed on for the parser to reject by name.
    return f"<unknown enum value {value}>"


# The range of a valid google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_TIMESTAMP_SECONDS = range(-62_135_596_800, 253_402_300_800)


def event_to_raw(event: pb.UsageEvent) -> dict[str, Any]:
    """A proto event as the billing-rules.md mapping that ledger.events.parse_event validates."""
    # Run for every ingested event: each field is read once, enums are looked up in plain dicts.
    value = event.workload_kind
    workload_kind = _WORKLOAD_KINDS[value] if value in _WORKLOAD_KINDS else _unknown_enum_value(value)
    value = event.type
    event_type = _EVENT_TYPES[value] if value in _EVENT_TYPES else _unknown_enum_value(value)
    raw: dict[str, Any] = {
        "event_id": event.event_id,
        "org_id": event.org_id,
        "endpoint_id": event.endpoint_id,
        "workload_id": event.workload_id,
        "workload_kind": workload_kind,
        "development": event.development,
        "instance_type": event.instance_type,
        "type": event_type,
    }
    occur_time = event.occur_time
    seconds = occur_time.seconds
    if seconds or event.HasField("occur_time"):  # a non-zero field means the message is present
        nanos = occur_time.nanos
        if not 0 <= nanos < 1_000_000_000 or seconds not in _TIMESTAMP_SECONDS:
            raw["occurred_at"] = "Timestamp seconds/nanos out of range"  # not a valid Timestamp: rejected by name
        elif nanos % 1000:
            raw["occurred_at"] = "sub-microsecond time"  # rejected by the parser with a clear message
        else:
            raw["occurred_at"] = seconds * 1_000_000 + nanos // 1000
    text = event.workspace_id
    if text:
        raw["workspace_id"] = text
    text = event.request_id
    if text:
        raw["request_id"] = text
    text = event.volume_id
    if text:
        raw["volume_id"] = text
    text = event.gigabytes
    if text:
        raw["gigabytes"] = text
    value = event.worker_type
    if value:
        raw["worker_type"] = _WORKER_TYPES[value] if value in _WORKER_TYPES else _unknown_enum_value(value)
    value = event.stop_reason
    if value:
        raw["stop_reason"] = _STOP_REASONS[value] if value in _STOP_REASONS else _unknown_enum_value(value)
    value = event.storage_kind
    if value:
        raw["storage_kind"] = _STORAGE_KINDS[value] if value in _STORAGE_KINDS else _unknown_enum_value(value)
    value = event.interval_seconds
    if value:
        raw["interval_seconds"] = value
    # A field this build does not know, or a known one sent with the wrong wire type, would otherwise be dropped
    # silently and the fact recorded without it; the parser refuses it by name like an unknown JSON field.
    unknown = UnknownFieldSet(event)
    if len(unknown):
        for index in range(len(unknown)):
            raw[f"field {unknown[index].field_number}"] = None
    return raw


_TEXT_FIELDS = (
    *("event_id", "org_id", "workspace_id", "endpoint_id", "workload_id", "instance_type", "request_id", "volume_id"),
)
_ENUM_FIELDS = (
    ("workload_kind", pb.WorkloadKind, "WORKLOAD_KIND_"),
    ("worker_type", pb.WorkerType, "WORKER_TYPE_"),
    ("type", pb.EventType, "EVENT_TYPE_"),
    ("stop_reason", pb.StopReason, "STOP_REASON_"),
    ("storage_kind", pb.StorageKind, "STORAGE_KIND_"),
)


def _exact(name: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    # type(), not isinstance: a bool is an int to Python, and true is not 1 (issue #23).
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if type(value) not in kinds:
        raise TypeError(f"{name}: must be {what}, not {json_type(value)}")
    return value


def json_type(value: Any) -> str:
    """What a decoded JSON value is, as a person reading the file would say it."""
    names = {bool: "a boolean", int: "an integer", float: "a number with a fraction", str: "a string"}
    return names.get(type(value), "an array" if isinstance(value, list) else "an object")


def raw_to_event(raw: Mapping[str, Any]) -> pb.UsageEvent:
    """The client side: a billing-rules.md mapping (as in JSONL files) to a proto event, taking types exactly.

    A key that is no event field raises ValueError, a value of the wrong JSON type TypeError, each naming the field:
    nothing is coerced (a string "false" is not false, 3600.9 is not 3600, true is not 1). Values of the right type
    are passed on as they are for the server to validate and name. None means absent.
    """
    unknown = sorted(set(raw) - KNOWN_EVENT_FIELDS)
    if unknown:
        raise ValueError(f"{unknown[0]}: is not a usage-event field (see billing-rules.md, 'Usage events')")
    event = pb.UsageEvent()
    for name in _TEXT_FIELDS:
        value = raw.get(name)
        if value is not None:
            setattr(event, name, _exact(name, value, str, "a string"))
    value = raw.get("gigabytes")
    if value is not None:
        event.gigabytes = str(_exact("gigabytes", value, (str, int), "a decimal string or an integer"))
    value = raw.get("development")
    if value is not None:
        event.development = _exact("development", value, bool, "true or false")
    for name, enum, prefix in _ENUM_FIELDS:
        value = raw.get(name)
        if value is not None and value != "":
            try:
                setattr(event, name, enum.Value(prefix + _exact(name, value, str, "a string")))
            except ValueError as err:
                raise ValueError(f"{name}: {value[:40]!r} is not a known value") from err
    value = raw.get("occurred_at")
    if value is not None and value != "":  # empty: absent, for the server to name as required
        try:
            micros = parse_rfc3339_micros(_exact("occurred_at", value, str, "an RFC 3339 string"))
        except ValueError as err:
            raise ValueError(f"occurred_at: {err}") from err
        event.occur_time.CopyFrom(micros_to_timestamp(micros))
    value = raw.get("interval_seconds")
    if value is not None:
        event.interval_seconds = _exact("interval_seconds", value, int, "a whole number of seconds")
    return event


def event_to_proto(event: UsageEvent) -> pb.UsageEvent:
    """A validated domain event as the proto the server takes: exactly its fields, nothing re-parsed."""
    if event.is_heartbeat:  # R28: org-level; its domain placeholders for workload fields stay off the wire
        return pb.UsageEvent(
            event_id=event.event_id,
            org_id=event.org_id,
            type=pb.EventType.Value("EVENT_TYPE_HEARTBEAT"),
            occur_time=micros_to_timestamp(event.occurred_at),
        )
    message = pb.UsageEvent(
        event_id=event.event_id,
        org_id=event.org_id,
        endpoint_id=event.endpoint_id,
        workload_id=event.workload_id,
        workload_kind=pb.WorkloadKind.Value("WORKLOAD_KIND_" + event.workload_kind.value),
        development=event.development,
        instance_type=event.instance_type,
        worker_type=pb.WorkerType.Value("WORKER_TYPE_" + event.worker_type.value),
        type=pb.EventType.Value("EVENT_TYPE_" + event.type.value),
        occur_time=micros_to_timestamp(event.occurred_at),
    )
    if event.workspace_id is not None:
        message.workspace_id = event.workspace_id
    if event.request_id is not None:
        message.request_id = event.request_id
    if event.stop_reason is not None:
        message.stop_reason = pb.StopReason.Value("STOP_REASON_" + event.stop_reason.value)
    if event.storage_kind is not None:
        message.storage_kind = pb.StorageKind.Value("STORAGE_KIND_" + event.storage_kind.value)
    if event.volume_id is not None:
        message.volume_id = event.volume_id
    if event.gigabytes is not None:
        message.gigabytes = format_decimal(event.gigabytes)
    if event.interval_seconds is not None:
        message.interval_seconds = event.interval_seconds
    return message


def micros_to_timestamp(micros: int) -> Timestamp:
    seconds, fraction = divmod(micros, 1_000_000)
    return Timestamp(seconds=seconds, nanos=fraction * 1000)


def timestamp_to_micros(ts: Timestamp) -> int:
    return int(ts.seconds) * 1_000_000 + int(ts.nanos) // 1000


def proto_field(path: str) -> str:
    """Rename a violation's field path to the proto's names: `events[2].occurred_at` -> `events[2].occur_time`."""
    head, _, last = path.rpartition(".")
    renamed = PROTO_FIELD_NAMES.get(last, last)
    return f"{head}.{renamed}" if head else renamed


def events_to_raw(messages: Iterable[pb.UsageEvent]) -> list[dict[str, Any]]:
    """A batch of proto events as the mappings ledger.events.parse_event validates: types mapped, nothing checked."""
    to_raw = event_to_raw
    return [to_raw(message) for message in messages]


def proto_violations(err: InvalidInput) -> InvalidInput:
    """The validator's refusal with its field paths as the proto names them (`occurred_at` -> `occur_time`)."""
    return InvalidInput([FieldViolation(proto_field(v.field), v.description) for v in err.violations])


def entry_to_proto(entry: Entry) -> pb.Entry:
    return pb.Entry(
        log_id=entry.log_id,
        sequence=entry.sequence,
        kind=pb.EntryKind.Value("ENTRY_KIND_" + entry.kind.value),
        record_time=micros_to_timestamp(entry.recorded_at),
        body=entry.body,
        previous_hash=entry.previous_hash,
        entry_hash=entry.entry_hash,
    )


def entry_from_proto(message: pb.Entry) -> Entry:
    return Entry(
        log_id=message.log_id,
        sequence=message.sequence,
        kind=EntryKind(pb.EntryKind.Name(message.kind)[len("ENTRY_KIND_") :]),
        recorded_at=timestamp_to_micros(message.record_time),
        body=message.body,
        previous_hash=message.previous_hash,
        entry_hash=message.entry_hash,
    )


def head_to_proto(head: LogHead) -> pb.LogHead:
    return pb.LogHead(log_id=head.log_id, size=head.size, head_hash=head.head_hash, root_hash=head.root_hash)


def head_from_proto(message: pb.LogHead) -> LogHead:
    return LogHead(message.log_id, message.size, message.head_hash, message.root_hash)


def append_response(results: Sequence[Appended]) -> pb.AppendEventsResponse:
    """The AppendEvents answer, built in place: one AppendResult per event, in request order."""
    response = pb.AppendEventsResponse()
    add = response.results.add
    for result in results:
        message = add()
        message.log_id = result.log_id
        message.sequence = result.sequence
        message.entry_hash = result.entry_hash
        if result.duplicate:
            message.duplicate = True
    return response


def appended_to_proto(result: Appended) -> pb.AppendResult:
    return pb.AppendResult(
        log_id=result.log_id, sequence=result.sequence, entry_hash=result.entry_hash, duplicate=result.duplicate
    )
