"""What the log says happened (R27): the entries a lookup loaded and cites, the org, endpoint and window a query is
about, the STORAGE_SAMPLE intervals meeting a window (R13, R14) and how far a workload is proven running (R28)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ledger.account import AccountChange, AccountHistory
from ledger.dispute.query import DisputeQuery
from ledger.dispute.report import Evidence
from ledger.errors import FieldViolation, InvalidInput, NotFound
from ledger.events import DEFAULT_STORAGE_INTERVAL_SECONDS, EventType, StopReason, UsageEvent, event_from_body
from ledger.log.entry import Entry, EntryHead, EntryKind, EntryRef, org_log_id, org_of_log
from ledger.plans import PlanHistory
from ledger.ports import DisputeSource
from ledger.timeutil import MICROS_PER_SECOND, parse_rfc3339_micros

# Each workload's events as the rating engine takes them, with their sequence numbers.
LoggedEvents = dict[str, list[tuple[UsageEvent, int]]]


@dataclass(frozen=True, slots=True)
class Fact:
    """What the answer says of a cited event entry: from its body, or for a request entry the lookup did not load,
    from the rollups' pairing of the request (a StartedSpan, ledger/rating/serving_time.py) next to the entry's hash
    from the log."""

    type: EventType
    occurred_at: int
    workload_id: str
    request_id: str | None = None
    stop_reason: StopReason | None = None

    @classmethod
    def of(cls, event: UsageEvent) -> Fact:
        return cls(event.type, event.occurred_at, event.workload_id, event.request_id, event.stop_reason)


@dataclass
class CaseFile:
    """Entries loaded so far, and the ones the answer cites."""

    source: DisputeSource
    loaded: dict[tuple[str, int], Entry] = field(default_factory=dict)
    heads: dict[tuple[str, int], EntryHead] = field(default_factory=dict)  # read without their bodies
    hashed: dict[tuple[str, int], bytes] = field(default_factory=dict)  # event entries by their hash in the rollups
    events: dict[tuple[str, int], UsageEvent] = field(default_factory=dict)
    facts: dict[tuple[str, int], Fact] = field(default_factory=dict)  # of every event entry loaded or headed
    cited: dict[tuple[str, int], Evidence] = field(default_factory=dict)

    def add(self, entries: Iterable[Entry]) -> list[tuple[Entry, UsageEvent | None]]:
        parsed = []
        for entry in entries:
            key = (entry.log_id, entry.sequence)
            self.loaded[key] = entry
            event = self.events.get(key)
            if event is None and entry.kind is EntryKind.EVENT:
                event = event_from_body(json.loads(entry.body))
                self.events[key] = event
                self.facts[key] = Fact.of(event)
            parsed.append((entry, event))
        return parsed

    def add_heads(self, heads: Iterable[EntryHead], facts: Mapping[int, Fact]) -> None:
        """Entries known by their heads and what the rollups say of them (`facts`, by sequence number)."""
        for head in heads:
            key = (head.log_id, head.sequence)
            self.heads[key] = head
            self.facts.setdefault(key, facts[head.sequence])

    def add_hashed(self, log_id: str, hashes: Mapping[int, bytes], facts: Mapping[int, Fact]) -> None:
        """Event entries known by the hash the rollups keep of them and what the rollups say of them (`facts`),
        by sequence number: citing one needs neither its body nor its head."""
        for sequence, entry_hash in hashes.items():
            key = (log_id, sequence)
            self.hashed[key] = entry_hash
            self.facts.setdefault(key, facts[sequence])

    def head(self, log_id: str, sequence: int) -> Entry | EntryHead:
        """The entry if it was loaded, else its head: citing needs no body."""
        key = (log_id, sequence)
        found = self.loaded.get(key) or self.heads.get(key)
        if found is None:
            found = self.heads[key] = self.source.entry_head(log_id, sequence)
        return found

    def cite(self, log_id: str, sequence: int, what: str | None = None) -> EntryRef:
        key = (log_id, sequence)
        already = self.cited.get(key)
        if already is not None:  # a busy session's requests are cited from several lines
            return already.ref
        entry_hash = self.hashed.get(key)
        if entry_hash is None:
            entry = self.head(log_id, sequence)
            kind, entry_hash = entry.kind, entry.entry_hash
        else:
            kind = EntryKind.EVENT
        ref = EntryRef(log_id, sequence, entry_hash)
        fact = self.facts.get(key)
        if fact is not None:
            detail = f" {fact.request_id}" if fact.request_id else ""
            reason = f" ({fact.stop_reason.value})" if fact.stop_reason else ""
            description = what or f"{fact.type.value}{detail}{reason} of {fact.workload_id}"
            self.cited[key] = Evidence(
                ref, kind, description, fact.occurred_at, fact.workload_id, fact.request_id, fact.type
            )
        else:
            self.cited[key] = Evidence(ref, kind, what or kind.value)
        return ref


@dataclass(frozen=True)
class Target:
    org_id: str
    endpoint_id: str
    start: int
    end: int
    request_workload: str | None
    request_span: tuple[int, int, bool] | None = None  # first and last event of the request, and whether it finished
    request_id: str | None = None


def resolve(source: DisputeSource, query: DisputeQuery, evidence: CaseFile, now: int) -> Target:
    """The org, endpoint and window of a query: given, or found from the request (ix_entries_request)."""
    window = query.window()
    if query.request_id is None:
        assert query.endpoint_id is not None and window is not None  # DisputeQuery.check
        org_id = query.org_id or _org_of_endpoint(source, query.endpoint_id)
        return Target(org_id, query.endpoint_id, window[0], window[1], None)

    found = evidence.add(source.request_entries(query.request_id, query.org_id))
    events = [(entry, event) for entry, event in found if event is not None]
    if not events:
        where = f" in org {query.org_id}'s log" if query.org_id else ""
        raise NotFound(f"R27: no entry names request {query.request_id}{where}")
    orgs = sorted({event.org_id for _, event in events})
    if len(orgs) > 1:
        raise InvalidInput(
            [FieldViolation("org_id", f"request {query.request_id} is in the logs of orgs {', '.join(orgs)}: give one")]
        )
    org_id = orgs[0]
    events.sort(key=lambda item: (item[1].type is not EventType.REQUEST_STARTED, item[1].occurred_at, item[0].sequence))
    first = events[0][1]
    if query.endpoint_id is not None and query.endpoint_id != first.endpoint_id:
        raise InvalidInput(
            [
                FieldViolation(
                    "endpoint_id",
                    f"request {query.request_id} ran on endpoint {first.endpoint_id} "
                    f"(entry {events[0][0].log_id}#{events[0][0].sequence}), not {query.endpoint_id}",
                )
            ]
        )
    span = (
        min(event.occurred_at for _, event in events),
        max(event.occurred_at for _, event in events),
        any(event.type is EventType.REQUEST_FINISHED for _, event in events),
    )
    if window is None:
        window = _request_window(source, evidence, org_id, first, events, now)
    return Target(org_id, first.endpoint_id, window[0], window[1], first.workload_id, span, query.request_id)


def _request_window(
    source: DisputeSource,
    evidence: CaseFile,
    org_id: str,
    first: UsageEvent,
    events: Sequence[tuple[Entry, UsageEvent]],
    now: int,
) -> tuple[int, int]:
    """A request's time in flight: its start to its finish, or (never finished) to its session's end (R4)."""
    start = min(event.occurred_at for _, event in events)
    finish = max(event.occurred_at for _, event in events)
    if not any(event.type is EventType.REQUEST_FINISHED for _, event in events):
        log_id = org_log_id(org_id)
        loaded = evidence.add(source.workload_entries(log_id, [first.workload_id]))
        stop = [
            event.occurred_at
            for _, event in loaded
            if event is not None
            and event.type in (EventType.WORKLOAD_STOPPED, EventType.WORKLOAD_BOOT_FAILED)
            and event.occurred_at >= start
        ]
        finish = min(stop) if stop else max(now, start)
    return start, max(finish, start + 1)


def _org_of_endpoint(source: DisputeSource, endpoint_id: str) -> str:
    orgs = source.endpoint_orgs(endpoint_id)
    if not orgs:
        raise NotFound(f"R27: no org's log has entries of endpoint {endpoint_id}")
    if len(orgs) > 1:
        raise InvalidInput(
            [FieldViolation("org_id", f"endpoint {endpoint_id} is in the logs of orgs {', '.join(orgs)}: give one")]
        )
    return orgs[0]


STORAGE_TYPE = b'"type":"STORAGE_SAMPLE"'
_OCCURRED_AT = b'"occurred_at":"'
_INTERVAL = b'"interval_seconds":'


def storage_outside(entry: Entry, start: int, end: int) -> bool:
    """A STORAGE_SAMPLE entry whose interval misses the window, told from its canonical body without parsing it
    (most of a long session's entries besides requests): the fields are written in one fixed form."""
    body = entry.body
    if STORAGE_TYPE not in body:
        return False
    at = body.find(_OCCURRED_AT)
    found = body.find(_INTERVAL)
    if at < 0 or found < 0:
        return False  # not the canonical form: parse it the slow way
    occurred = parse_rfc3339_micros(body[at + len(_OCCURRED_AT) : body.index(b'"', at + len(_OCCURRED_AT))].decode())
    digits = body[found + len(_INTERVAL) :].split(b",", 1)[0].split(b"}", 1)[0]
    return not (occurred > start and occurred - int(digits) * MICROS_PER_SECOND < end)


def storage_overlaps(event: UsageEvent, start: int, end: int) -> bool:
    """Whether a STORAGE_SAMPLE's interval (ending at occurred_at, R13, R14) meets the window [start, end)."""
    if event.type is not EventType.STORAGE_SAMPLE:
        return False
    interval = event.interval_seconds if event.interval_seconds is not None else DEFAULT_STORAGE_INTERVAL_SECONDS
    return event.occurred_at > start and event.occurred_at - interval * MICROS_PER_SECOND < end


def org_of_query(source: DisputeSource, query: DisputeQuery) -> str | None:
    """The org a query is about, read before the lookup proper; None when the request names no single org
    (reconstruct then says so)."""
    if query.org_id is not None:
        return query.org_id
    if query.request_id is not None:
        orgs = {org_of_log(entry.log_id) for entry in source.request_entries(query.request_id)}
        return orgs.pop() if len(orgs) == 1 else None
    assert query.endpoint_id is not None  # DisputeQuery.check
    return _org_of_endpoint(source, query.endpoint_id)


def plans_of(account_entries: Sequence[Entry]) -> PlanHistory:
    """R10: the plan history the org's ACCOUNT entries make."""
    return AccountHistory(tuple(AccountChange.from_body(e.body_json(), e.sequence) for e in account_entries)).plans()


def known_evidence(running: tuple[int | None, dict[str, int]], workload_id: str) -> int | None:
    """R28: the later of the org's latest HEARTBEAT and the workload's latest event, as the log says."""
    heartbeat, latest = running
    own = latest.get(workload_id)
    if heartbeat is None:
        return own
    return heartbeat if own is None else max(heartbeat, own)
