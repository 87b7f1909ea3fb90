"""Usage events as billing-rules.md defines them: parsing, validation and their canonical body."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from enum import StrEnum
from typing import Any

from ledger.errors import FieldViolation, InvalidInput
from ledger.timeutil import format_micros, parse_rfc3339_micros

# Identifiers are restricted so they are safe in logs, URLs and log ids, and bounded in size. `\Z`, not `$`,
# which also matches before a final newline: "acme\n" is not an identifier.
IDENTIFIER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}\Z")
IDENTIFIER_RULE = "1 to 128 characters: letters, digits and . _ : @ / -, starting with a letter or digit"
INSTANCE_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}\Z")
MAX_GIGABYTES = Decimal("1000000000")  # 1 EB: anything larger is a unit mistake, not usage
# The one grammar of a decimal string in an event (docs/events.md): ASCII digits, optionally a point and more ASCII
# digits. No sign, exponent, "_", spaces or non-ASCII digits, all of which Decimal() would otherwise take:
# "1_000", "１２" and " 12 " are not quantities anyone meant to bill (issue #23).
DECIMAL_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?\Z")
DECIMAL_RULE = 'a decimal string of ASCII digits with an optional fraction, such as "50" or "12.5"'
_is_decimal_text = DECIMAL_RE.match
MAX_INTERVAL_SECONDS = 31 * 24 * 3600
DEFAULT_STORAGE_INTERVAL_SECONDS = 300
# Rejecting events too far in the future keeps a skewed clock from pre-billing usage (issue 2).
MAX_FUTURE_SKEW_MICROS = 5 * 60 * 1_000_000
EARLIEST_MICROS = parse_rfc3339_micros("2000-01-01T00:00:00Z")


class EventType(StrEnum):
    WORKLOAD_SCHEDULED = "WORKLOAD_SCHEDULED"
    IMAGE_PULL_STARTED = "IMAGE_PULL_STARTED"
    WORKLOAD_UP = "WORKLOAD_UP"
    WORKLOAD_READY = "WORKLOAD_READY"
    WORKLOAD_BOOT_FAILED = "WORKLOAD_BOOT_FAILED"
    WORKLOAD_STOPPED = "WORKLOAD_STOPPED"
    REQUEST_STARTED = "REQUEST_STARTED"
    REQUEST_FINISHED = "REQUEST_FINISHED"
    STORAGE_SAMPLE = "STORAGE_SAMPLE"
    # Org-level (R28): every event of the org that occurred before it has been sent; evidence, never billed.
    HEARTBEAT = "HEARTBEAT"


class WorkloadKind(StrEnum):
    SERVING = "SERVING"
    BUILD = "BUILD"
    TRAINING = "TRAINING"


class WorkerType(StrEnum):
    FLEX = "FLEX"
    ACTIVE = "ACTIVE"


class StopReason(StrEnum):
    SCALED_DOWN = "SCALED_DOWN"
    OOM = "OOM"
    CRASH = "CRASH"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    BUILD_SUCCEEDED = "BUILD_SUCCEEDED"
    BUILD_FAILED = "BUILD_FAILED"


class StorageKind(StrEnum):
    CONTAINER_DISK = "CONTAINER_DISK"
    NETWORK_VOLUME = "NETWORK_VOLUME"


REQUEST_TYPES = frozenset({EventType.REQUEST_STARTED, EventType.REQUEST_FINISHED})
# The fields every event carries; a HEARTBEAT (org-level, R28) carries only these.
HEARTBEAT_FIELDS = ("event_id", "org_id", "type", "occurred_at")
# The fields that describe a workload: a HEARTBEAT carries none of them.
WORKLOAD_FIELDS = (
    "workspace_id",
    "endpoint_id",
    "workload_id",
    "workload_kind",
    "development",
    "instance_type",
    "worker_type",
    "request_id",
    "stop_reason",
    "storage_kind",
    "volume_id",
    "gigabytes",
    "interval_seconds",
)
# Every usage-event field of billing-rules.md: a key that is none of them is refused by name.
KNOWN_EVENT_FIELDS = frozenset((*HEARTBEAT_FIELDS, *WORKLOAD_FIELDS))


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One fact reported by the control plane. Times are integer microseconds since the Unix epoch (UTC)."""

    event_id: str
    org_id: str
    endpoint_id: str
    workload_id: str
    workload_kind: WorkloadKind
    instance_type: str
    type: EventType
    occurred_at: int
    workspace_id: str | None = None
    development: bool = False
    worker_type: WorkerType = WorkerType.FLEX
    request_id: str | None = None
    stop_reason: StopReason | None = None
    storage_kind: StorageKind | None = None
    volume_id: str | None = None
    gigabytes: Decimal | None = None
    interval_seconds: int | None = None

    @property
    def is_heartbeat(self) -> bool:
        """An org HEARTBEAT (R28): its workload fields are empty placeholders, never a workload."""
        return self.type is EventType.HEARTBEAT

    def body(self) -> dict[str, Any]:
        """The canonical body: billing-rules.md field names, enums by name, decimals and times as strings.

        Absent optional fields are left out, so the same fact always has the same bytes (R24). A HEARTBEAT's body
        holds only its org-level fields (R28).
        """
        if self.type is EventType.HEARTBEAT:
            return {
                "event_id": self.event_id,
                "org_id": self.org_id,
                "type": self.type.value,
                "occurred_at": _format_occurred_at(self.occurred_at),
            }
        body: dict[str, Any] = {
            "event_id": self.event_id,
            "org_id": self.org_id,
            "endpoint_id": self.endpoint_id,
            "workload_id": self.workload_id,
            "workload_kind": self.workload_kind.value,
            "development": self.development,
            "instance_type": self.instance_type,
            "worker_type": self.worker_type.value,
            "type": self.type.value,
            "occurred_at": _format_occurred_at(self.occurred_at),
        }
        if self.workspace_id is not None:
            body["workspace_id"] = self.workspace_id
        if self.request_id is not None:
            body["request_id"] = self.request_id
        if self.stop_reason is not None:
            body["stop_reason"] = self.stop_reason.value
        if self.storage_kind is not None:
            body["storage_kind"] = self.storage_kind.value
        if self.volume_id is not None:
            body["volume_id"] = self.volume_id
        if self.gigabytes is not None:
            body["gigabytes"] = format_decimal(self.gigabytes)
        if self.interval_seconds is not None:
            body["interval_seconds"] = self.interval_seconds
        return body


# "YYYY-MM-DDTHH:MM:" of recent minutes: events of one minute share it, and time.gmtime is most of format_micros.
_MINUTE_PREFIXES: dict[int, str] = {}
_MAX_MINUTE_PREFIXES = 4096
_LATEST_CACHED_MICROS = parse_rfc3339_micros("9999-12-31T23:59:59Z")


def _format_occurred_at(micros: int) -> str:
    """format_micros(micros), character for character."""
    if type(micros) is not int or not EARLIEST_MICROS <= micros <= _LATEST_CACHED_MICROS:
        return format_micros(micros)
    seconds, fraction = divmod(micros, 1_000_000)
    minute, second = divmod(seconds, 60)
    prefix = _MINUTE_PREFIXES.get(minute)
    if prefix is None:
        if len(_MINUTE_PREFIXES) >= _MAX_MINUTE_PREFIXES:
            _MINUTE_PREFIXES.clear()
        prefix = _MINUTE_PREFIXES[minute] = format_micros(minute * 60_000_000)[: -len("00.000000Z")]
    return f"{prefix}{second:02d}.{fraction:06d}Z"


def format_decimal(value: Decimal) -> str:
    """A decimal in plain notation with no exponent and no trailing zeros ("1.5", "120", "0.25")."""
    # Not Decimal.normalize(): it rounds to the context's 28 digits, and money must stay exact (R21).
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


class _Collector:
    """Gathers every violation of one record so the caller hears about all of them at once."""

    def __init__(self, prefix: str, raw: Mapping[str, Any]) -> None:
        self.prefix = prefix
        self.raw = raw
        self.violations: list[FieldViolation] = []

    def bad(self, name: str, description: str) -> None:
        self.violations.append(FieldViolation(f"{self.prefix}{name}", description))

    def identifier(self, name: str, *, required: bool = True) -> str | None:
        value = self.raw.get(name)
        if value is None or value == "":
            if required:
                self.bad(name, f"is required ({IDENTIFIER_RULE})")
            return None
        if not isinstance(value, str) or not IDENTIFIER_RE.match(value):
            self.bad(name, f"must be {IDENTIFIER_RULE}")
            return None
        return value

    def enum(self, name: str, enum: type[Any], *, required: bool = True, default: Any = None) -> Any:
        value = self.raw.get(name)
        if value is None or value == "":
            if required:
                self.bad(name, f"is required (one of {', '.join(m.value for m in enum)})")
            return default
        try:
            return enum(value)
        except ValueError:
            shown = value[:40] if isinstance(value, str) else type(value).__name__
            self.bad(name, f"{shown!r} is not one of {', '.join(m.value for m in enum)}")
            return default


_WORKLOAD_KINDS = {m.value: m for m in WorkloadKind}
_EVENT_TYPES = {m.value: m for m in EventType}
_WORKER_TYPES = {m.value: m for m in WorkerType}
_STOP_REASONS = {m.value: m for m in StopReason}
_STORAGE_KINDS = {m.value: m for m in StorageKind}
_is_identifier = IDENTIFIER_RE.match
# Orgs, workspaces, endpoints and workloads recur in event after event: remember the ones already matched.
# Bounded (emptied when full), and holding only strings IDENTIFIER_RE accepted, so it answers exactly as it would.
_SEEN_IDENTIFIERS: set[str] = set()
_MAX_SEEN_IDENTIFIERS = 65_536


def _is_recurring_identifier(value: str) -> bool:
    if value in _SEEN_IDENTIFIERS:
        return True
    if not _is_identifier(value):
        return False
    if len(_SEEN_IDENTIFIERS) >= _MAX_SEEN_IDENTIFIERS:
        _SEEN_IDENTIFIERS.clear()
    _SEEN_IDENTIFIERS.add(value)
    return True


_is_instance_type = INSTANCE_TYPE_RE.match


def _accept_well_formed(
    raw: Mapping[str, Any], now_micros: int, known_instance_type: Callable[[str], bool]
) -> UsageEvent | None:
    """parse_event's result for an event that passes every one of its checks, or None to run them one by one."""
    fields = well_formed_fields(raw, now_micros, known_instance_type)
    # Positional (the field order is checked below): a third cheaper than keywords.
    return None if fields is None else UsageEvent(*fields)


# UsageEvent's fields in declaration order, as well_formed_fields returns them.
EventFields = tuple[
    str, str, str, str, WorkloadKind, str, EventType, int, str | None, bool, WorkerType,
    str | None, StopReason | None, StorageKind | None, str | None, Decimal | None, int | None,
]  # fmt: skip


def well_formed_fields(
    raw: Mapping[str, Any], now_micros: int, known_instance_type: Callable[[str], bool]
) -> EventFields | None:
    """The fields of parse_event's result for an event that passes every one of its checks, or None.

    Ingest validates every event, and almost all are well formed: deciding that with one straight pass (exact
    types only, no violation bookkeeping) is several times cheaper. It accepts only what the checks below accept
    and builds the same UsageEvent; anything unusual (a str subclass, an empty required field, a bad value)
    returns None, so the full checks name every problem exactly as before.
    """
    if type(raw) is not dict or not raw.keys() <= KNOWN_EVENT_FIELDS:
        return None
    get = raw.get
    event_id = get("event_id")
    org_id = get("org_id")
    endpoint_id = get("endpoint_id")
    workload_id = get("workload_id")
    if (
        type(event_id) is not str
        or type(org_id) is not str
        or type(endpoint_id) is not str
        or type(workload_id) is not str
        or not _is_identifier(event_id)
        or not _is_recurring_identifier(org_id)
        or not _is_recurring_identifier(endpoint_id)
        or not _is_recurring_identifier(workload_id)
    ):
        return None
    workspace_id = get("workspace_id")
    if workspace_id is not None:
        if type(workspace_id) is not str:
            return None
        if not workspace_id:
            workspace_id = None
        elif not _is_recurring_identifier(workspace_id):
            return None
    value = get("workload_kind")
    workload_kind = _WORKLOAD_KINDS.get(value) if type(value) is str else None
    value = get("type")
    event_type = _EVENT_TYPES.get(value) if type(value) is str else None
    if workload_kind is None or event_type is None or event_type is EventType.HEARTBEAT:
        return None  # a HEARTBEAT is org-level (R28): the full checks take it
    value = get("worker_type")
    if value is None or (type(value) is str and not value):
        worker_type = WorkerType.FLEX
    elif type(value) is str and value in _WORKER_TYPES:
        worker_type = _WORKER_TYPES[value]
    else:
        return None
    development = get("development", False)
    if development is None:
        development = False
    elif development is not True and development is not False:
        return None
    instance_type = get("instance_type")
    if type(instance_type) is not str or not _is_instance_type(instance_type):
        return None
    if not known_instance_type(instance_type):
        return None
    value = get("occurred_at")
    if type(value) is int:
        occurred_at = value
    elif type(value) is str:
        try:
            occurred_at = parse_rfc3339_micros(value)
        except ValueError:
            return None
    else:
        return None
    if occurred_at < EARLIEST_MICROS or occurred_at > now_micros + MAX_FUTURE_SKEW_MICROS:
        return None

    request_id = get("request_id")
    if event_type in REQUEST_TYPES:
        if type(request_id) is not str or not _is_identifier(request_id):
            return None
    elif request_id is not None:
        if type(request_id) is not str or request_id:
            return None
        request_id = None
    value = get("stop_reason")
    if event_type is EventType.WORKLOAD_STOPPED:
        stop_reason = _STOP_REASONS.get(value) if type(value) is str else None
        if stop_reason is None:
            return None
    elif value is not None and (type(value) is not str or value):
        return None
    else:
        stop_reason = None

    storage_kind = volume_id = gigabytes = interval_seconds = None
    if event_type is EventType.STORAGE_SAMPLE:
        value = get("storage_kind")
        storage_kind = _STORAGE_KINDS.get(value) if type(value) is str else None
        if storage_kind is None:
            return None
        volume_id = get("volume_id")
        if volume_id is not None:
            if type(volume_id) is not str:
                return None
            if not volume_id:
                volume_id = None
            elif not _is_identifier(volume_id):
                return None
        if volume_id is None and storage_kind is StorageKind.NETWORK_VOLUME:
            return None
        value = get("gigabytes")
        if type(value) is str:
            if not _is_decimal_text(value):
                return None
        elif type(value) is not int:
            return None
        gigabytes = Decimal(value)
        if (
            not gigabytes.is_finite()
            or gigabytes < 0
            or gigabytes > MAX_GIGABYTES
            or gigabytes.as_tuple().exponent < -9  # type: ignore[operator]
        ):
            return None
        value = get("interval_seconds")
        if value is None:
            interval_seconds = DEFAULT_STORAGE_INTERVAL_SECONDS
        elif type(value) is int and 1 <= value <= MAX_INTERVAL_SECONDS:
            interval_seconds = value
        else:
            return None
    else:
        for name in ("storage_kind", "volume_id", "gigabytes", "interval_seconds"):
            value = get(name)
            if value is not None and (type(value) is not str or value):
                return None
    return (
        event_id,
        org_id,
        endpoint_id,
        workload_id,
        workload_kind,
        instance_type,
        event_type,
        occurred_at,
        workspace_id,
        development,
        worker_type,
        request_id,
        stop_reason,
        storage_kind,
        volume_id,
        gigabytes,
        interval_seconds,
    )


_FIELD_ORDER = (
    "event_id",
    "org_id",
    "endpoint_id",
    "workload_id",
    "workload_kind",
    "instance_type",
    "type",
    "occurred_at",
    "workspace_id",
    "development",
    "worker_type",
    "request_id",
    "stop_reason",
    "storage_kind",
    "volume_id",
    "gigabytes",
    "interval_seconds",
)
if tuple(f.name for f in fields(UsageEvent)) != _FIELD_ORDER:
    raise ImportError("ledger.events: UsageEvent's fields changed order; update _accept_well_formed to match")


def canonical_event_body(fields: EventFields) -> bytes:
    """canonical_body(UsageEvent(*fields).body()), byte for byte, for fields that well_formed_fields returned.

    Every string in such fields is an identifier, an instance type, an enum name, a formatted time or a decimal,
    none of which JSON escapes: so the body is spliced together in sorted key order with no encoder, no
    intermediate dict and no sort, several times cheaper on every event ingested (tests compare the two).
    """
    (
        event_id, org_id, endpoint_id, workload_id, workload_kind, instance_type, event_type, occurred_at,
        workspace_id, development, worker_type, request_id, stop_reason, storage_kind, volume_id, gigabytes,
        interval_seconds,
    ) = fields  # fmt: skip
    # Optional fields as whole segments (or ""), then one f-string: StrEnum members format as their values.
    gb = "" if gigabytes is None else '","gigabytes":"' + format_decimal(gigabytes)
    iv = '",' if interval_seconds is None else '","interval_seconds":' + int.__repr__(interval_seconds) + ","
    rq = "" if request_id is None else '","request_id":"' + request_id
    sr = "" if stop_reason is None else '","stop_reason":"' + stop_reason
    sk = "" if storage_kind is None else '","storage_kind":"' + storage_kind
    vo = "" if volume_id is None else '","volume_id":"' + volume_id
    ws = "" if workspace_id is None else '","workspace_id":"' + workspace_id
    return (
        f'{{"development":{"true" if development else "false"},"endpoint_id":"{endpoint_id}","event_id":"{event_id}'
        f'{gb}","instance_type":"{instance_type}{iv}"occurred_at":"{_format_occurred_at(occurred_at)}'
        f'","org_id":"{org_id}{rq}{sr}{sk}","type":"{event_type}{vo}","worker_type":"{worker_type}'
        f'","workload_id":"{workload_id}","workload_kind":"{workload_kind}{ws}"}}'
    ).encode()


def parse_event(
    raw: Mapping[str, Any],
    *,
    now_micros: int,
    known_instance_type: Callable[[str], bool],
    prefix: str = "",
) -> UsageEvent:
    """Validate one event (a mapping of billing-rules.md field names); raise InvalidInput naming every bad field.

    `prefix` names the record in field paths, such as `events[3].`.
    """
    accepted = _accept_well_formed(raw, now_micros, known_instance_type)
    if accepted is not None:
        return accepted
    c = _Collector(prefix, raw)
    unknown = sorted(set(raw) - KNOWN_EVENT_FIELDS)
    for name in unknown[:5]:
        c.bad(str(name)[:64], "is not a usage-event field (see docs/billing-rules.md, 'Usage events')")
    if raw.get("type") == EventType.HEARTBEAT.value:
        return _parse_heartbeat(c, raw, now_micros)

    event_id = c.identifier("event_id")
    org_id = c.identifier("org_id")
    workspace_id = c.identifier("workspace_id", required=False)
    endpoint_id = c.identifier("endpoint_id")
    workload_id = c.identifier("workload_id")
    workload_kind = c.enum("workload_kind", WorkloadKind)
    event_type = c.enum("type", EventType)
    worker_type = c.enum("worker_type", WorkerType, required=False, default=WorkerType.FLEX)

    development = raw.get("development", False)
    if development is None:
        development = False
    if not isinstance(development, bool):
        c.bad("development", "must be true or false")
        development = False

    instance_type = raw.get("instance_type")
    if not instance_type:
        c.bad("instance_type", "is required (an instance type of the price book, R11)")
    elif not isinstance(instance_type, str) or not INSTANCE_TYPE_RE.match(instance_type):
        c.bad("instance_type", "must be 1 to 64 letters, digits, spaces and . _ -")
        instance_type = None
    elif not known_instance_type(instance_type):
        c.bad("instance_type", f"R11: {instance_type!r} is not in the price book; add it with a price-book update")
        instance_type = None

    occurred_at = _parse_time(c, "occurred_at", raw.get("occurred_at"), now_micros)

    request_id = c.identifier("request_id", required=event_type in REQUEST_TYPES)
    stop_reason = c.enum("stop_reason", StopReason, required=event_type is EventType.WORKLOAD_STOPPED)
    storage_kind = c.enum("storage_kind", StorageKind, required=event_type is EventType.STORAGE_SAMPLE)
    volume_id = c.identifier("volume_id", required=storage_kind is StorageKind.NETWORK_VOLUME)
    gigabytes = _parse_gigabytes(c, raw.get("gigabytes"), required=event_type is EventType.STORAGE_SAMPLE)
    interval_seconds = _parse_interval(c, raw.get("interval_seconds"))
    if event_type is EventType.STORAGE_SAMPLE and interval_seconds is None:
        interval_seconds = DEFAULT_STORAGE_INTERVAL_SECONDS

    if event_type is not None and event_type is not EventType.STORAGE_SAMPLE:
        for name in ("storage_kind", "volume_id", "gigabytes", "interval_seconds"):
            if raw.get(name) not in (None, ""):
                c.bad(name, f"only STORAGE_SAMPLE events carry {name}")
    if event_type is not None and event_type not in REQUEST_TYPES and raw.get("request_id") not in (None, ""):
        c.bad("request_id", "only REQUEST_STARTED and REQUEST_FINISHED events carry request_id")
    if event_type is not EventType.WORKLOAD_STOPPED and raw.get("stop_reason") not in (None, ""):
        c.bad("stop_reason", "only WORKLOAD_STOPPED events carry stop_reason")

    if c.violations:
        raise InvalidInput(c.violations)
    assert event_id and org_id and endpoint_id and workload_id and workload_kind and event_type
    assert isinstance(instance_type, str) and occurred_at is not None
    return UsageEvent(
        event_id=event_id,
        org_id=org_id,
        endpoint_id=endpoint_id,
        workload_id=workload_id,
        workload_kind=workload_kind,
        instance_type=instance_type,
        type=event_type,
        occurred_at=occurred_at,
        workspace_id=workspace_id,
        development=development,
        worker_type=worker_type,
        request_id=request_id if event_type in REQUEST_TYPES else None,
        stop_reason=stop_reason,
        storage_kind=storage_kind,
        volume_id=volume_id,
        gigabytes=gigabytes,
        interval_seconds=interval_seconds,
    )


def _parse_heartbeat(c: _Collector, raw: Mapping[str, Any], now_micros: int) -> UsageEvent:
    """R28: a HEARTBEAT names its org and instant only; any workload field is refused by name."""
    event_id = c.identifier("event_id")
    org_id = c.identifier("org_id")
    for name in WORKLOAD_FIELDS:
        if raw.get(name) not in (None, "", False):
            c.bad(name, "R28: a HEARTBEAT is org-level and carries no workload fields")
    occurred_at = _parse_time(c, "occurred_at", raw.get("occurred_at"), now_micros)
    if c.violations:
        raise InvalidInput(c.violations)
    assert event_id and org_id and occurred_at is not None
    return heartbeat(event_id, org_id, occurred_at)


def heartbeat(event_id: str, org_id: str, occurred_at: int) -> UsageEvent:
    """An org HEARTBEAT (R28). UsageEvent's workload fields are required, so they hold empty placeholders that
    its body leaves out: rating and the rollups pass a HEARTBEAT over as a workload (`is_heartbeat`)."""
    return UsageEvent(
        event_id=event_id,
        org_id=org_id,
        endpoint_id="",
        workload_id="",
        workload_kind=WorkloadKind.SERVING,
        instance_type="",
        type=EventType.HEARTBEAT,
        occurred_at=occurred_at,
    )


def event_from_body(body: Mapping[str, Any]) -> UsageEvent:
    """Rebuild an event from a stored canonical body (already validated when it was appended)."""
    if body["type"] == EventType.HEARTBEAT.value:
        return heartbeat(body["event_id"], body["org_id"], parse_rfc3339_micros(body["occurred_at"]))
    gigabytes = body.get("gigabytes")
    stop_reason = body.get("stop_reason")
    storage_kind = body.get("storage_kind")
    return UsageEvent(
        event_id=body["event_id"],
        org_id=body["org_id"],
        endpoint_id=body["endpoint_id"],
        workload_id=body["workload_id"],
        workload_kind=WorkloadKind(body["workload_kind"]),
        instance_type=body["instance_type"],
        type=EventType(body["type"]),
        occurred_at=parse_rfc3339_micros(body["occurred_at"]),
        workspace_id=body.get("workspace_id"),
        development=bool(body.get("development", False)),
        worker_type=WorkerType(body.get("worker_type", "FLEX")),
        request_id=body.get("request_id"),
        stop_reason=StopReason(stop_reason) if stop_reason else None,
        storage_kind=StorageKind(storage_kind) if storage_kind else None,
        volume_id=body.get("volume_id"),
        gigabytes=Decimal(gigabytes) if gigabytes is not None else None,
        interval_seconds=body.get("interval_seconds"),
    )


def _parse_time(c: _Collector, name: str, value: Any, now_micros: int) -> int | None:
    if value is None or value == "":
        c.bad(name, "is required (RFC 3339 with a zone, for example 2026-10-05T09:00:00.000000Z)")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        micros = value  # already microseconds (from a protobuf Timestamp)
    elif isinstance(value, str):
        try:
            micros = parse_rfc3339_micros(value)
        except ValueError as err:
            c.bad(name, f"{value[:40]!r} is not an RFC 3339 time: {err}")
            return None
    else:
        c.bad(name, "must be an RFC 3339 string")
        return None
    if micros < EARLIEST_MICROS:
        c.bad(name, f"{format_micros(micros)} is before 2000-01-01, which no usage can be")
        return None
    if micros > now_micros + MAX_FUTURE_SKEW_MICROS:
        c.bad(
            name,
            f"{format_micros(micros)} is more than 5 minutes in the future (server time {format_micros(now_micros)})",
        )
        return None
    return micros


def _parse_gigabytes(c: _Collector, value: Any, *, required: bool) -> Decimal | None:
    if value is None or value == "":
        if required:
            c.bad("gigabytes", 'is required for STORAGE_SAMPLE (a decimal string such as "50" or "12.5")')
        return None
    if type(value) is float:
        # A float has already lost exactness (R21): ask for a string.
        c.bad("gigabytes", f"must be {DECIMAL_RULE} (or a JSON integer), never a float")
        return None
    if type(value) is int or (isinstance(value, str) and _is_decimal_text(value)):  # an int, not a bool
        amount = Decimal(value)
    else:
        shown = repr(value[:40]) if isinstance(value, str) else f"a {type(value).__name__}"
        c.bad("gigabytes", f"{shown} is not {DECIMAL_RULE}")
        return None
    if amount < 0:
        c.bad("gigabytes", "must not be negative")
        return None
    if amount > MAX_GIGABYTES:
        c.bad("gigabytes", f"must be at most {MAX_GIGABYTES}")
        return None
    if amount.as_tuple().exponent < -9:  # type: ignore[operator]
        c.bad("gigabytes", "must have at most 9 decimal places")
        return None
    return amount


def _parse_interval(c: _Collector, value: Any) -> int | None:
    if value is None or value == "":
        return None
    # Exactly an integer: not "3600" (a string), 3600.9 or 3600.0 (floats), nor true (a bool, which Python counts
    # as the integer 1).
    if type(value) is not int or not 1 <= value <= MAX_INTERVAL_SECONDS:
        c.bad("interval_seconds", f"must be a whole number of seconds from 1 to {MAX_INTERVAL_SECONDS}")
        return None
    return value
