"""Rating an org's events per workload: lifecycle, zero lines (R1, R5, R8), storage and anomalies (R26)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import cached_property

from ledger.errors import EventConflict, FieldViolation, InvalidInput
from ledger.events import EventType, UsageEvent, WorkerType, WorkloadKind
from ledger.plans import PlanHistory
from ledger.pricebook import PriceHistory
from ledger.rating.attribution import RequestSpan
from ledger.rating.money import ZERO, exact_sum
from ledger.rating.sessions import LoggedEvent, Session, rate_session
from ledger.rating.storage import StorageCharge, rate_storage_sample
from ledger.timeutil import format_micros

# Ties on occurred_at are broken by lifecycle order, so an UP and a STOPPED at one instant make a 0 s session
# and a request event at the stop instant still belongs to the session; then by entry sequence.
TYPE_ORDER: Mapping[EventType, int] = {
    EventType.WORKLOAD_SCHEDULED: 0,
    EventType.IMAGE_PULL_STARTED: 1,
    EventType.WORKLOAD_UP: 2,
    EventType.WORKLOAD_READY: 3,
    EventType.REQUEST_STARTED: 4,
    EventType.REQUEST_FINISHED: 5,
    EventType.STORAGE_SAMPLE: 6,
    EventType.WORKLOAD_BOOT_FAILED: 7,
    EventType.WORKLOAD_STOPPED: 8,
    EventType.HEARTBEAT: 9,
}


ENDING_TYPES = frozenset({EventType.WORKLOAD_STOPPED, EventType.WORKLOAD_BOOT_FAILED})


@dataclass(frozen=True, slots=True)
class ZeroLine:
    """Something listed but billed nothing: an informational event (R1), a boot failure with no UP (R5) or a
    development workload's session (R8). `end` is None for an open development session."""

    rule: str
    event_type: EventType
    seqs: tuple[int, ...]
    org_id: str
    endpoint_id: str
    workload_id: str
    workspace_id: str | None
    workload_kind: WorkloadKind
    instance_type: str
    worker_type: WorkerType
    start: int
    end: int | None
    explanation: str

    @property
    def amount(self) -> Decimal:
        return ZERO


@dataclass(frozen=True, slots=True)
class Anomaly:
    """R26: an event kept in the ledger but charged nothing because it contradicts the workload's lifecycle."""

    seq: int
    event_id: str
    event_type: EventType
    occurred_at: int
    org_id: str
    endpoint_id: str
    workload_id: str
    reason: str

    @property
    def rule(self) -> str:
        return "R26"


@dataclass(frozen=True)
class WorkloadRating:
    """Everything one workload's events rate to. Workloads are independent, so re-rating one is enough when a
    new event touches it."""

    workload_id: str
    as_of: int | None
    session: Session | None
    zero_lines: tuple[ZeroLine, ...]
    storage: tuple[StorageCharge, ...]
    anomalies: tuple[Anomaly, ...]

    @property
    def amount(self) -> Decimal:
        compute = [self.session.amount] if self.session is not None else []
        return exact_sum(compute + [charge.amount for charge in self.storage])


@dataclass(frozen=True)
class OrgRating:
    """An org's rated usage: one WorkloadRating per workload, sorted by workload_id, and flattened views.

    `log_size`, when known, is exactly how many entries of the org's log the rating reflects (read in one snapshot
    with them). An invoice records it; its entry is appended only while the log still has that size (R17), so an
    auditor re-derives it from exactly the entries before it (ledger/billing/rederive.py).

    `latest_event_at` is the org's latest event time (HEARTBEATs included) and `heartbeat_at` its latest HEARTBEAT
    (R28), both within `as_of` when the rating is cut there; open sessions are rated to their evidence, never to a
    wall clock (ledger/rating/evidence.py).
    """

    org_id: str | None
    as_of: int | None
    workloads: tuple[WorkloadRating, ...]
    log_size: int | None = None
    latest_event_at: int | None = None
    heartbeat_at: int | None = None
    storage_hold: int | None = None

    @cached_property
    def sessions(self) -> tuple[Session, ...]:
        found = (w.session for w in self.workloads if w.session is not None)
        return tuple(sorted(found, key=lambda s: (s.up, s.up_seq)))

    @cached_property
    def zero_lines(self) -> tuple[ZeroLine, ...]:
        return tuple(sorted((z for w in self.workloads for z in w.zero_lines), key=lambda z: z.seqs))

    @cached_property
    def storage(self) -> tuple[StorageCharge, ...]:
        return tuple(sorted((c for w in self.workloads for c in w.storage), key=lambda c: c.seq))

    @cached_property
    def storage_by_start(self) -> tuple[StorageCharge, ...]:
        """`storage` in the order of the instants the intervals start (R13, R14: invoices count them by start)."""
        return tuple(sorted(self.storage, key=lambda c: (c.start, c.seq)))

    @cached_property
    def storage_starts(self) -> list[int]:
        """The start of each of `storage_by_start`, for bisecting."""
        return [charge.start for charge in self.storage_by_start]

    @cached_property
    def anomalies(self) -> tuple[Anomaly, ...]:
        return tuple(sorted((a for w in self.workloads for a in w.anomalies), key=lambda a: a.seq))

    @property
    def amount(self) -> Decimal:
        return exact_sum([w.amount for w in self.workloads])

    def workload(self, workload_id: str) -> WorkloadRating | None:
        return next((w for w in self.workloads if w.workload_id == workload_id), None)

    def with_workload(self, rating: WorkloadRating) -> OrgRating:
        """This rating with one workload re-rated (incremental rollups after an event touched it)."""
        others = [w for w in self.workloads if w.workload_id != rating.workload_id]
        workloads = tuple(sorted([*others, rating], key=lambda w: w.workload_id))
        return replace(self, workloads=workloads)


def rate_org(
    events: Iterable[LoggedEvent], prices: PriceHistory, plans: PlanHistory, *, as_of: int | None = None
) -> OrgRating:
    """Rate every workload of one org. Events may come in any order and more than once (R24: counted once).

    Open sessions accrue to their evidence (R28): their own latest event or the org's latest HEARTBEAT, cut at
    `as_of` when given (a read of the org as it stood at an instant)."""
    unique = unique_events(events)
    org_ids = sorted({event.org_id for event, _ in unique})
    if len(org_ids) > 1:
        raise InvalidInput([FieldViolation("events", f"rate_org rates one org; got events of {org_ids[:5]}")])
    by_workload: dict[str, list[LoggedEvent]] = defaultdict(list)
    heartbeat_at: int | None = None
    latest: int | None = None
    for item in unique:
        occurred_at = item[0].occurred_at
        if as_of is not None and occurred_at > as_of:
            occurred_at = as_of
        latest = occurred_at if latest is None else max(latest, occurred_at)
        if item[0].is_heartbeat:
            heartbeat_at = occurred_at if heartbeat_at is None else max(heartbeat_at, occurred_at)
        else:
            by_workload[item[0].workload_id].append(item)
    workloads = tuple(
        rate_workload(by_workload[w], prices, plans, known_evidence=heartbeat_at, as_of=as_of)
        for w in sorted(by_workload)
    )
    holds = [hold for w in by_workload.values() if (hold := storage_hold(w, as_of)) is not None]
    return OrgRating(
        org_ids[0] if org_ids else None, as_of, workloads, None, latest, heartbeat_at, min(holds, default=None)
    )


def storage_hold(events: Iterable[LoggedEvent], as_of: int | None = None) -> int | None:
    """R28 for storage: a running workload's next storage interval starts at its latest sample (samples report the
    interval ending at their occurred_at, R13, R14), so its storage is known only up to that sample. None once its
    lifecycle has ended (a stop or boot failure) or when it has no sample."""
    latest: int | None = None
    for event, _ in events:
        if event.type in ENDING_TYPES:
            return None
        if event.type is EventType.STORAGE_SAMPLE:
            at = event.occurred_at if as_of is None else min(event.occurred_at, as_of)
            latest = at if latest is None else max(latest, at)
    return latest


def unique_events(events: Iterable[LoggedEvent]) -> list[LoggedEvent]:
    """One copy of each event_id (the lowest seq); the same event_id with different content is a conflict (R24)."""
    by_id: dict[str, LoggedEvent] = {}
    for event, seq in events:
        known = by_id.get(event.event_id)
        if known is None or (known[0] == event and seq < known[1]):
            by_id[event.event_id] = (event, seq)
        elif known[0] != event:
            raise EventConflict(event.org_id, event.event_id)
    return list(by_id.values())


def rate_workload(
    events: Iterable[LoggedEvent],
    prices: PriceHistory,
    plans: PlanHistory,
    *,
    known_evidence: int | None = None,
    as_of: int | None = None,
) -> WorkloadRating:
    """Rate the events of one workload (in any order, duplicates allowed).

    An open session accrues to its evidence of running (R28): the latest of these events, or `known_evidence`
    (the org's latest HEARTBEAT, or events of the workload the caller holds elsewhere) if later; cut at `as_of`
    when given. Never the wall clock (R10).
    """
    ordered = sorted(unique_events(events), key=lambda item: _event_order(*item))
    if not ordered:
        raise InvalidInput([FieldViolation("events", "rate_workload needs at least one event")])
    identities = {(event.org_id, event.workload_id) for event, _ in ordered}
    if len(identities) > 1:
        raise InvalidInput([FieldViolation("events", "rate_workload rates one workload of one org")])
    scan = _WorkloadScan(has_up=any(event.type is EventType.WORKLOAD_UP for event, _ in ordered))
    for event, seq in ordered:
        scan.take(event, seq)
    evidence = ordered[-1][0].occurred_at  # R28: an event of the workload at t shows it running at t
    if known_evidence is not None:
        evidence = max(evidence, known_evidence)
    if as_of is not None:
        evidence = min(evidence, as_of)
    session = scan.session(prices, plans, evidence)  # before zero_lines are read: a development session adds one
    return WorkloadRating(
        workload_id=ordered[0][0].workload_id,
        as_of=as_of,
        session=session,
        zero_lines=tuple(sorted(scan.zero_lines, key=lambda z: z.seqs)),
        storage=tuple(scan.storage),
        anomalies=tuple(scan.anomalies),
    )


def _event_order(event: UsageEvent, seq: int) -> tuple[int, int, int, str]:
    return (event.occurred_at, TYPE_ORDER[event.type], seq, event.event_id)


class _WorkloadScan:
    """Walks one workload's events in occurred_at order, keeping the lifecycle and what contradicts it."""

    def __init__(self, *, has_up: bool) -> None:
        self.has_up = has_up
        self.up: LoggedEvent | None = None
        self.ready: LoggedEvent | None = None
        self.stop: LoggedEvent | None = None
        self.requests: dict[str, RequestSpan] = {}
        self.zero_lines: list[ZeroLine] = []
        self.storage: list[StorageCharge] = []
        self.anomalies: list[Anomaly] = []

    def take(self, event: UsageEvent, seq: int) -> None:
        kind = event.type
        if kind in (EventType.WORKLOAD_SCHEDULED, EventType.IMAGE_PULL_STARTED):
            self._zero(
                "R1",
                event,
                (seq,),
                event.occurred_at,
                event.occurred_at,
                f"R1: {kind.value} (entry #{seq}) is informational: metering starts at WORKLOAD_UP",
            )
        elif kind is EventType.STORAGE_SAMPLE:
            self.storage.append(rate_storage_sample(event, seq))
        elif kind is EventType.WORKLOAD_UP:
            if self.up is None:
                self.up = (event, seq)
            else:
                self._anomaly(event, seq, f"a second WORKLOAD_UP; the session started at entry #{self.up[1]}")
        elif kind is EventType.WORKLOAD_READY:
            if self.up is None:
                self._anomaly(event, seq, "WORKLOAD_READY before any WORKLOAD_UP")
            elif self.stop is not None:
                self._anomaly(event, seq, f"WORKLOAD_READY after the session ended at entry #{self.stop[1]}")
            elif self.ready is not None:
                self._anomaly(event, seq, f"a second WORKLOAD_READY; the first is entry #{self.ready[1]}")
            else:
                self.ready = (event, seq)
        elif kind is EventType.WORKLOAD_BOOT_FAILED and self.up is None and not self.has_up:
            self._zero(
                "R5",
                event,
                (seq,),
                event.occurred_at,
                event.occurred_at,
                f"R5: WORKLOAD_BOOT_FAILED (entry #{seq}) and the workload was never observed up: not billed",
            )
        elif kind in (EventType.WORKLOAD_BOOT_FAILED, EventType.WORKLOAD_STOPPED):
            if self.up is None:
                self._anomaly(event, seq, f"{kind.value} before any WORKLOAD_UP")
            elif self.stop is not None:
                self._anomaly(event, seq, f"{kind.value} after the session already ended at entry #{self.stop[1]}")
            else:
                self.stop = (event, seq)
        else:
            self._take_request(event, seq)

    def _take_request(self, event: UsageEvent, seq: int) -> None:
        request_id = event.request_id or ""
        known = self.requests.get(request_id)
        if self.up is None:
            self._anomaly(event, seq, f"request {request_id} on a workload not up (no WORKLOAD_UP before it)")
        elif self.stop is not None:
            self._anomaly(event, seq, f"request {request_id} after the workload stopped at entry #{self.stop[1]}")
        elif self.up[0].workload_kind is not WorkloadKind.SERVING:
            self._anomaly(event, seq, f"request {request_id} on a {self.up[0].workload_kind.value} workload")
        elif event.type is EventType.REQUEST_STARTED:
            if known is None:
                self.requests[request_id] = RequestSpan(request_id, event.occurred_at, seq)
            else:
                self._anomaly(event, seq, f"request {request_id} already started at entry #{known.started_seq}")
        elif known is None or known.finished_seq is not None:
            self._anomaly(event, seq, f"REQUEST_FINISHED for request {request_id}, which is not in flight")
        else:
            self.requests[request_id] = RequestSpan(
                request_id, known.started_at, known.started_seq, event.occurred_at, seq
            )

    def _zero(self, rule: str, event: UsageEvent, seqs: tuple[int, ...], start: int, end: int | None, why: str) -> None:
        self.zero_lines.append(
            ZeroLine(
                rule,
                event.type,
                seqs,
                event.org_id,
                event.endpoint_id,
                event.workload_id,
                event.workspace_id,
                event.workload_kind,
                event.instance_type,
                event.worker_type,
                start,
                end,
                why,
            )
        )

    def _anomaly(self, event: UsageEvent, seq: int, what: str) -> None:
        reason = (
            f"R26: entry #{seq} ({event.type.value} at {format_micros(event.occurred_at)}): {what}; charged nothing"
        )
        self.anomalies.append(
            Anomaly(
                seq,
                event.event_id,
                event.type,
                event.occurred_at,
                event.org_id,
                event.endpoint_id,
                event.workload_id,
                reason,
            )
        )

    def session(self, prices: PriceHistory, plans: PlanHistory, evidence: int) -> Session | None:
        if self.up is None:
            return None  # R9: no UP, no session, no charge
        up_event, up_seq = self.up
        if up_event.development:
            stop_event, stop_seq = self.stop if self.stop is not None else (None, None)
            ready_seq = self.ready[1] if self.ready is not None else None
            end = stop_event.occurred_at if stop_event is not None else None
            until = f"to {format_micros(end)}" if end is not None else "still open"
            seqs = tuple(s for s in (up_seq, ready_seq, stop_seq) if s is not None)
            self._zero(
                "R8",
                up_event,
                seqs,
                up_event.occurred_at,
                end,
                f"R8: development workload {up_event.workload_id} (WORKLOAD_UP entry #{up_seq} at "
                f"{format_micros(up_event.occurred_at)}, {until}) is never billed",
            )
            return None
        return rate_session(self.up, self.ready, self.stop, list(self.requests.values()), prices, plans, evidence)
