"""Mapping between protobuf messages and domain objects, kept in one place."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from usageledger.v1 import ledger_pb2 as pb

from ledger.entry import Entry, EntryKind, LogHead
from ledger.store import Appended

# Proto field names differ from billing-rules.md's in one place: occurred_at is `occur_time` (AIP `*_time`).
PROTO_FIELD_NAMES = {"occurred_at": "occur_time"}


def _enum_name(enum: Any, value: int, prefix: str) -> str | None:
    if value == 0:
        return None
    try:
        return str(enum.Name(value))[len(prefix) :]
    except ValueError:
        return f"<unknown enum value {value}>"


def event_to_raw(event: pb.UsageEvent) -> dict[str, Any]:
    """A proto event as the billing-rules.md mapping that ledger.events.parse_event validates."""
    raw: dict[str, Any] = {
        "event_id": event.event_id,
        "org_id": event.org_id,
        "endpoint_id": event.endpoint_id,
        "workload_id": event.workload_id,
        "workload_kind": _enum_name(pb.WorkloadKind, event.workload_kind, "WORKLOAD_KIND_"),
        "development": event.development,
        "instance_type": event.instance_type,
        "type": _enum_name(pb.EventType, event.type, "EVENT_TYPE_"),
    }
    if event.HasField("occur_time"):
        raw["occurred_at"] = event.occur_time.seconds * 1_000_000 + event.occur_time.nanos // 1000
        if event.occur_time.nanos % 1000:
            raw["occurred_at"] = "sub-microsecond time"  # rejected by the parser with a clear message
    optional_strings = ("workspace_id", "request_id", "volume_id", "gigabytes")
    for name in optional_strings:
        value = getattr(event, name)
        if value:
            raw[name] = value
    worker = _enum_name(pb.WorkerType, event.worker_type, "WORKER_TYPE_")
    if worker:
        raw["worker_type"] = worker
    stop = _enum_name(pb.StopReason, event.stop_reason, "STOP_REASON_")
    if stop:
        raw["stop_reason"] = stop
    storage = _enum_name(pb.StorageKind, event.storage_kind, "STORAGE_KIND_")
    if storage:
        raw["storage_kind"] = storage
    if event.interval_seconds:
        raw["interval_seconds"] = event.interval_seconds
    return raw


def raw_to_event(raw: dict[str, Any]) -> pb.UsageEvent:
    """The client side: a billing-rules.md mapping (as in JSONL files) to a proto event.

    Values the proto cannot hold are passed through as strings where possible, so the server names the field.
    """
    event = pb.UsageEvent()
    for name in (
        "event_id",
        "org_id",
        "workspace_id",
        "endpoint_id",
        "workload_id",
        "instance_type",
        "request_id",
        "volume_id",
    ):
        value = raw.get(name)
        if value is not None:
            setattr(event, name, str(value))
    if raw.get("gigabytes") is not None:
        event.gigabytes = str(raw["gigabytes"]) if not isinstance(raw["gigabytes"], float) else repr(raw["gigabytes"])
    event.development = bool(raw.get("development", False))
    for field, enum, prefix in (
        ("workload_kind", pb.WorkloadKind, "WORKLOAD_KIND_"),
        ("worker_type", pb.WorkerType, "WORKER_TYPE_"),
        ("type", pb.EventType, "EVENT_TYPE_"),
        ("stop_reason", pb.StopReason, "STOP_REASON_"),
        ("storage_kind", pb.StorageKind, "STORAGE_KIND_"),
    ):
        value = raw.get(field)
        if value:
            try:
                setattr(event, field, enum.Value(prefix + str(value)))
            except ValueError as err:
                raise ValueError(f"{field}: {value!r} is not a known value") from err
    if raw.get("occurred_at"):
        from ledger.timeutil import parse_rfc3339_micros

        try:
            micros = parse_rfc3339_micros(str(raw["occurred_at"]))
        except ValueError as err:
            raise ValueError(f"occurred_at: {err}") from err
        event.occur_time.CopyFrom(micros_to_timestamp(micros))
    if raw.get("interval_seconds") is not None:
        event.interval_seconds = int(raw["interval_seconds"])
    return event


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


def appended_to_proto(result: Appended) -> pb.AppendResult:
    return pb.AppendResult(
        log_id=result.log_id, sequence=result.sequence, entry_hash=result.entry_hash, duplicate=result.duplicate
    )
