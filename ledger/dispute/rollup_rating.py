"""Re-rating a window's workloads from the usage rollups (R25, R27): lifecycles, the requests near the window and
each session's serving union, so a lookup reads a bounded number of entries however long its sessions are."""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from ledger.dispute.evidence import (
    CaseFile,
    Fact,
    LoggedEvents,
    Target,
    known_evidence,
    storage_outside,
    storage_overlaps,
)
from ledger.dispute.window import MAX_LISTED_REQUESTS, STORAGE_LOOKAHEAD, end_of, listed_requests
from ledger.events import EventType, UsageEvent, WorkloadKind
from ledger.log.entry import org_log_id
from ledger.plans import PlanHistory
from ledger.ports import IndexedSource, ServingMeasure, SessionIndex
from ledger.pricebook import PriceHistory
from ledger.rating import (
    Attribution,
    RequestAttribution,
    RequestSpan,
    Session,
    StorageCharge,
    WorkloadRating,
    ZeroLine,
    attribute_serving,
    rate_workload,
)
from ledger.rating.attribution import cold_start_end, split_session
from ledger.rating.serving_time import RequestSummary, StartedSpan, serving_totals
from ledger.tracing import traced


class IndexedRating:
    """Rate the workloads touching a window from their lifecycle entries and the requests near the window.

    A long replica's R25 split needs the union of all its requests' in-flight time; the rollups keep that union
    (SessionIndex.serving_union, ledger/ports.py), so only requests that can share an instant with a request in
    the window are read: with D the workload's longest request, a request overlapping [start, end] starts after
    start - D, and any request overlapping that one starts after start - 2D and finishes before end + 2D. Requests
    still in flight (no finish) run to the session's end, so their starts are always read, and so is the range
    they cover when they reach into the window. A workload whose requests are not regular (a request started
    twice, a finish with no start, a request before UP), which the engine turns into R26 anomalies, is read whole;
    request events after the stop (anomalies too, but adding no serving time) are read alone, for the engine to
    list.
    """

    def __init__(
        self,
        source: IndexedSource,
        index: SessionIndex,
        evidence: CaseFile,
        prices: PriceHistory,
        plans: PlanHistory,
        now: int,
        target: Target,
    ) -> None:
        self.source = source
        self.index = index
        self.evidence = evidence
        self.prices = prices
        self.plans = plans
        self.now = now
        self.target = target
        self.log_id = org_log_id(target.org_id)
        self.running: tuple[int | None, dict[str, int]] = (None, {})
        self.in_window: dict[str, int] = {}  # requests in flight in the window, by workload (only some have shares)
        self.storage: list[StorageCharge] = []  # the endpoint's storage intervals meeting the window (R13, R14)
        self.request_hashes: dict[int, bytes] = {}  # entry hashes of the requests read from the rollups, by seq
        self.listing: dict[str, list[RequestAttribution]] = {}  # the requests the answer lists (listed_requests)

    def _rate(self, events: list[tuple[UsageEvent, int]], workload_id: str) -> WorkloadRating:
        return rate_workload(events, self.prices, self.plans, known_evidence=self.known(workload_id), as_of=self.now)

    def known(self, workload_id: str) -> int | None:
        """R28: the evidence of running a workload's kept events may not show (its requests, samples, HEARTBEATs)."""
        return known_evidence(self.running, workload_id)

    @traced("ledger.dispute.rate_sessions")
    def rate(self) -> tuple[LoggedEvents, dict[str, WorkloadRating]]:
        target, log_id = self.target, self.log_id
        start, end = target.start, target.end
        # Those with an entry of the endpoint in the window or the storage lookahead after it (as the whole read
        # takes them), and those up across the window with no entry inside it (R3), each with its lifecycle and
        # request summary. With them, the endpoint's storage intervals meeting the window (step 0): one round trip.
        window, storage = self.index.window_lifecycles_and_storage(
            target.org_id, target.endpoint_id, start, end, end + STORAGE_LOOKAHEAD
        )
        lifecycles, hashes, summaries = window.lifecycles, window.hashes, window.summaries
        ids = window.workload_ids
        request_workload = target.request_workload
        if request_workload is not None and request_workload not in ids:  # its entries lie outside the window: rare
            ids = sorted([*ids, request_workload])
            more, more_hashes, more_summaries = self.index.lifecycles_and_summaries(log_id, [request_workload])
            lifecycles, hashes, summaries = (
                {**lifecycles, **more},
                {**hashes, **more_hashes},
                {**summaries, **more_summaries},
            )
        # R28: how far each one is proven running, the asked request's workload included: read before it was added,
        # its open session was rated to its lifecycle entries alone, so an unfinished request (in flight to the
        # session's end, R25) ended earlier than the reading of every entry has it.
        self.running = self.source.running_evidence(log_id, ids)
        # The lifecycle events as the rollups keep them, cited by the entry hashes kept with them (R27).
        kept_events = {seq: event for w in ids for event, seq in lifecycles.get(w, ())}
        self.evidence.add_hashed(log_id, hashes, {seq: Fact.of(event) for seq, event in kept_events.items()})
        self.evidence.events.update(((log_id, seq), event) for seq, event in kept_events.items())
        near = [w for w in ids if lifecycles.get(w) and summaries.get(w, RequestSummary()).regular]
        whole = [w for w in ids if w not in near]

        # 0. The endpoint's storage intervals meeting the window, rated by the rollups and cited by the hashes they
        # keep (R13, R14): no sample is read. Storage changes no session, zero line or anomaly.
        storage_hashes: dict[int, bytes] = {}
        storage_facts: dict[int, Fact] = {}
        for charge, entry_hash in storage:
            self.storage.append(charge)
            storage_hashes[charge.seq] = entry_hash
            storage_facts[charge.seq] = Fact(EventType.STORAGE_SAMPLE, charge.end, charge.workload_id)
        self.evidence.add_hashed(log_id, storage_hashes, storage_facts)

        # 1. Each workload from its lifecycle.
        by_workload: LoggedEvents = {}
        ratings: dict[str, WorkloadRating] = {}
        sessions: dict[str, tuple[Session, Attribution, RequestSummary, tuple[int, int], int]] = {}
        for workload_id in near:
            summary = summaries.get(workload_id, RequestSummary())
            kept = list(lifecycles[workload_id])
            base = self._rate(kept, workload_id)
            session = base.session
            development_stop = _development_stop(base, kept, summary)
            if (summary.count == 0 and not summary.in_flight) or _development_quiet(base, kept, summary):
                by_workload[workload_id], ratings[workload_id] = kept, base  # its requests change nothing
            elif development_stop is not None and summary.last_at is not None:
                # A development workload (R8) with request events after its stop: only those make anything (R26
                # anomalies), so they are read alone, as a serving session's late ones are below.
                self._add_late_requests(workload_id, kept, development_stop, summary.last_at)
                by_workload[workload_id] = kept
                ratings[workload_id] = rate_workload(
                    kept, self.prices, self.plans, known_evidence=self.known(workload_id), as_of=self.now
                )
            elif (
                session is None
                or session.attribution is None
                or kept[0][0].workload_kind is not WorkloadKind.SERVING
                or not summary.within(session.up, None)
            ):
                whole.append(workload_id)  # requests the engine would call anomalies (R26): let it see them all
            else:
                late_starts = 0
                if session.stop is not None and summary.last_at is not None and summary.last_at > session.stop:
                    # Request events after the stop (a finish logged after the replica died, R4): R26 anomalies
                    # the engine must see to list them. They add no serving: the split ends at the stop.
                    late_starts = self._add_late_requests(workload_id, kept, session.stop, summary.last_at)
                    base = rate_workload(
                        kept, self.prices, self.plans, known_evidence=self.known(workload_id), as_of=self.now
                    )
                    session = base.session
                if session is None or session.attribution is None:  # the lifecycle decided both: cannot happen
                    raise AssertionError(f"{workload_id}: the session changed with its late request events")
                by_workload[workload_id], ratings[workload_id] = kept, base
                reach = self._reach(workload_id, session, summary)
                sessions[workload_id] = (session, session.attribution, summary, reach, late_starts)

        # 2. Their requests near the window and their serving unions (one read each for all of them), and the
        # R25 split over every request in place of the lifecycle-only one.
        if sessions:
            spans = {}
            for workload_id, (session, lifecycle_split, *_) in sessions.items():
                end_at = session.up + session.billed_micros - lifecycle_split.rounding_micros  # where the engine splits
                spans[workload_id] = (cold_start_end(session.up, session.ready, end_at), end_at)
            picked = self._requests_to_sweep(sessions, spans)
            for workload_id, (session, _, summary, _reach, late_starts) in sessions.items():
                sweep, shown = picked[workload_id]
                union = self.index.serving_union(log_id, workload_id, summary)
                split = self._whole_split(session, summary, sweep, shown, spans[workload_id], union, late_starts)
                session = dataclasses.replace(session, attribution=split)
                ratings[workload_id] = dataclasses.replace(ratings[workload_id], session=session)

        # 3. Workloads read whole.
        if whole:
            loaded = [e for e in self.source.workload_entries(log_id, whole) if not storage_outside(e, start, end)]
            read: LoggedEvents = defaultdict(list)
            for entry, event in self.evidence.add(loaded):
                if event is None or (
                    event.type is EventType.STORAGE_SAMPLE and not storage_overlaps(event, start, end)
                ):
                    continue
                read[event.workload_id].append((event, entry.sequence))
            for workload_id in whole:
                if read.get(workload_id):
                    by_workload[workload_id] = read[workload_id]
                    ratings[workload_id] = rate_workload(
                        read[workload_id],
                        self.prices,
                        self.plans,
                        known_evidence=self.known(workload_id),
                        as_of=self.now,
                    )

        # 4. The heads of the request entries the answer lists, in one read (they are cited one by one): what
        # each is comes from the pairing the rating used, so their bodies are neither read nor decoded.
        facts: dict[int, Fact] = {}
        self.listing = listed_requests(ratings, target.endpoint_id, start, end, self.now)
        for workload_id, rating in ratings.items():
            session = rating.session
            if session is None or session.attribution is None:
                continue
            asked = [r for r in session.attribution.requests if r.request_id == target.request_id]
            listed = [*self.listing.get(workload_id, ()), *asked]
            for r in listed:
                facts[r.started_seq] = Fact(EventType.REQUEST_STARTED, r.started_at, session.workload_id, r.request_id)
                if r.finished_seq is not None and r.finished_at is not None:
                    facts[r.finished_seq] = Fact(
                        EventType.REQUEST_FINISHED, r.finished_at, session.workload_id, r.request_id
                    )
        # Most were read with their hashes from the rollups (_requests_to_sweep); only a request in flight since
        # before the reach's range was not.
        self.evidence.add_hashed(log_id, {s: h for s, h in self.request_hashes.items() if s in facts}, facts)
        unread = [seq for seq in facts if (log_id, seq) not in self.evidence.loaded and seq not in self.request_hashes]
        if unread:
            self.evidence.add_heads(self.source.entry_heads(log_id, unread), facts)
        return by_workload, dict(sorted(ratings.items()))

    def _add_late_requests(self, workload_id: str, kept: list[tuple[UsageEvent, int]], stop: int, last_at: int) -> int:
        """Append to `kept` the workload's request events after its stop, up to its last one (R26 anomalies for
        the engine to list); returns how many of them are starts."""
        late = self.source.workload_entries_between(self.log_id, [workload_id], stop + 1, last_at)
        starts = 0
        for entry, event in self.evidence.add(late.get(workload_id, ())):
            if event is not None and event.request_id is not None:
                kept.append((event, entry.sequence))
                starts += event.type is EventType.REQUEST_STARTED
        return starts

    def _reach(self, workload_id: str, session: Session, summary: RequestSummary) -> tuple[int, int]:
        """The occurred_at range holding every request that can share an instant with one in the window."""
        start, end = self.target.start, self.target.end
        reach = 2 * summary.longest
        lo, hi = start - reach, end + reach
        session_end = end_of(session, self.now)
        for started_at, _ in summary.in_flight.values():
            if started_at <= hi:
                lo, hi = min(lo, started_at - summary.longest), max(hi, session_end)
        span = self.target.request_span if self.target.request_workload == workload_id else None
        if span is not None:
            lo, hi = min(lo, span[0] - reach), max(hi, span[1] + reach if span[2] else session_end)
        return lo, hi

    def _requests_to_sweep(
        self,
        sessions: Mapping[str, tuple[Session, Attribution, RequestSummary, tuple[int, int], int]],
        spans: Mapping[str, tuple[int, int]],
    ) -> dict[str, tuple[list[RequestSpan], set[str]]]:
        """For each workload, the requests the R25 sweep needs (every one whose flight meets a listed one's) and the
        ones the answer may list (the first MAX_LISTED_REQUESTS in flight in the window across them, and the one
        asked for); `in_window` gets how many were in flight in the window. Two statements for all the workloads.

        The reach of a busy replica holds a thousand requests, and only these are read: a request started in the
        window is in flight in it, so those are counted in SQL and the first few read; of those started before it,
        only the ones started at most the longest request D before its start can still be in flight at its start
        (a request with no finish is in the summary); and a request meeting a listed one's flight started at most
        D before that flight. Each is taken as `_spans` takes the reach's requests, so the answer is the same.
        """
        target, log_id = self.target, self.log_id
        start, stop = target.start, target.end
        ranges: dict[str, tuple[int, int, int]] = {}
        for workload_id, (session, _, summary, (lo, hi), _) in sessions.items():
            last = min(hi, stop - 1) if session.stop is None else min(hi, stop - 1, session.stop)
            first = max(lo, start - summary.longest)
            # When last < first the session stopped before `first`: nothing is counted, and what is read before the
            # split lies after the stop, which `_spans` leaves out.
            ranges[workload_id] = (first, max(first, start, session.up), last)
        asked = None
        if (
            target.request_id is not None
            and target.request_workload is not None
            and target.request_workload in sessions
        ):
            asked = (target.request_workload, target.request_id)  # its reach holds it (_reach), wherever it is
        found, self.request_hashes = self.index.window_request_spans(log_id, ranges, MAX_LISTED_REQUESTS, asked)
        shown: dict[str, set[str]] = {workload_id: set() for workload_id in sessions}
        flights: dict[str, list[tuple[int, int]]] = {}
        firsts: list[tuple[int, int, str, str]] = []  # each session's first requests in the window: (start, seq, ...)
        flight_by_workload: dict[str, dict[str, tuple[int, int]]] = {}
        for workload_id, (session, _, summary, reach, _) in sessions.items():
            _, end = spans[workload_id]
            up = session.up
            after_split, rows = found[workload_id]
            in_window = []
            flight_of = {}
            for request_id, at, seq, finished_at, _ in _spans(rows, summary, reach, session):
                flight_of[request_id] = (at, _in_flight_to(at, finished_at, up, end))
                if at < stop and flight_of[request_id][1] >= start:
                    in_window.append((at, seq, request_id))
            in_window.sort()
            # Those started before the split are read; every one from the split on is counted in SQL (the reach
            # runs 2D past the window, so a request of the session started in the window is in that range). A split
            # ending before the window has nothing in flight in it.
            split_at = ranges[workload_id][1]
            count = 0 if end < start else sum(1 for at, *_ in in_window if at < split_at) + after_split
            self.in_window[workload_id] = count
            firsts += [(at, seq, workload_id, request_id) for at, seq, request_id in in_window[:MAX_LISTED_REQUESTS]]
            flight_by_workload[workload_id] = flight_of
        # The first few across these sessions hold every one of theirs the answer lists (listed_requests picks
        # among them and the requests of workloads read whole).
        firsts.sort()
        for _, _, workload_id, request_id in firsts[:MAX_LISTED_REQUESTS]:
            shown[workload_id].add(request_id)
        if asked is not None:
            shown[asked[0]].add(asked[1])
        for workload_id, flight_of in flight_by_workload.items():
            flights[workload_id] = _merged(flight_of[r] for r in shown[workload_id] if r in flight_of)
        reads = {}
        for workload_id, merged in flights.items():
            lo, hi = sessions[workload_id][3]
            if merged:
                longest = sessions[workload_id][2].longest
                reads[workload_id] = (max(lo, merged[0][0] - longest), min(hi, max(b for _, b in merged)))
        swept = self.index.request_spans(log_id, reads) if reads else {}
        picked: dict[str, tuple[list[RequestSpan], set[str]]] = {}
        for workload_id, (session, _, summary, reach, _) in sessions.items():
            _, end = spans[workload_id]
            merged = flights[workload_id]
            sweep = [
                RequestSpan(*r)
                for r in _spans(swept.get(workload_id, ()), summary, reach, session)
                if _meets_any(r[1], _in_flight_to(r[1], r[3], session.up, end), merged)
            ]
            picked[workload_id] = (sweep, shown[workload_id])
        return picked

    def _whole_split(
        self,
        session: Session,
        summary: RequestSummary,
        sweep: Sequence[RequestSpan],
        shown: set[str],
        span: tuple[int, int],
        union: ServingMeasure,
        late_starts: int,
    ) -> Attribution:
        """The R25 split over every request (from the rollups), with the shares of the requests the answer lists
        (`shown`). A request's share integrates 1 / (requests in flight) over its own flight, so `sweep` holds only
        the requests whose flights meet theirs (_requests_to_sweep); the split's totals come from the serving union.
        Shares are made only for what the answer shows: making one (two exact Fractions) costs more than sweeping."""
        cold_end, end = span

        def wanted(request: RequestSpan, in_flight_from: int, in_flight_to: int) -> bool:
            return request.request_id in shown

        shares = attribute_serving(
            session.up, session.ready, end, session.billed_micros, session.amount, session.runs, sweep, wanted
        )
        in_flight_from = min((at for at, _ in summary.in_flight.values() if _in_session(at, session)), default=None)
        micros, amount = serving_totals(union, session.runs, cold_end, end, in_flight_from)
        return split_session(
            session.up,
            session.ready,
            end,
            session.billed_micros,
            session.amount,
            session.runs,
            micros,
            amount,
            shares.requests,
            summary.count - late_starts,  # a request started after the stop is an anomaly, not the session's
        )


def _merged(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Closed intervals merged where they meet, in order."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(intervals):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _meets_any(lo: int, hi: int, merged: Sequence[tuple[int, int]]) -> bool:
    """Whether the closed interval [lo, hi] meets one of `merged` (sorted, disjoint)."""
    at = bisect.bisect_right(merged, (hi, math.inf)) - 1  # the last interval starting at or before hi
    return at >= 0 and merged[at][1] >= lo


def _in_flight_to(started_at: int, finished_at: int | None, up: int, end: int) -> int:
    """Where R25 ends a request's flight: its finish, or the session's end without one (attribute_serving)."""
    start = min(max(started_at, up), end)
    finish = end if finished_at is None else finished_at
    return min(max(finish, start), end)


def _development_line(base: WorkloadRating, kept: Sequence[tuple[UsageEvent, int]]) -> ZeroLine | None:
    """The R8 line of a serving development workload (no session, never billed), None for any other."""
    development = [line for line in base.zero_lines if line.rule == "R8"]
    if base.session is None and len(development) == 1 and kept[0][0].workload_kind is WorkloadKind.SERVING:
        return development[0]
    return None


def _development_quiet(base: WorkloadRating, kept: Sequence[tuple[UsageEvent, int]], summary: RequestSummary) -> bool:
    """A development workload (R8) whose requests all fall inside its lifecycle: the engine makes nothing of them,
    neither a charge nor an anomaly (R26), so they need not be read."""
    line = _development_line(base, kept)
    return line is not None and summary.within(line.start, line.end)


def _development_stop(
    base: WorkloadRating, kept: Sequence[tuple[UsageEvent, int]], summary: RequestSummary
) -> int | None:
    """The stop of a stopped development workload (R8) whose request events all come at or after its UP: the
    engine makes nothing of those up to the stop, and an R26 anomaly of each one after it (a finish logged after
    the replica died), whatever came before it. None for any other workload."""
    line = _development_line(base, kept)
    if line is None or line.end is None or not summary.within(line.start, None):
        return None
    return line.end


def _in_session(at: int, session: Session) -> bool:
    """A request event the engine counts in the session: from UP to the stop, both included (TYPE_ORDER)."""
    return session.up <= at and (session.stop is None or at <= session.stop)


def _spans(
    started: Iterable[StartedSpan], summary: RequestSummary, reach: tuple[int, int], session: Session
) -> list[StartedSpan]:
    """Requests as the engine pairs them, from those started in this workload's reach and its requests in flight.
    A finish outside the reach is left out: such a request cannot meet a request the answer lists (see the class).
    Events after the stop are the engine's anomalies (R26): a request finished only after it is in flight to the
    end, as the engine has it. Plain tuples, in RequestSpan's field order: a busy window has a thousand of them
    and only the few the sweep needs become RequestSpans."""
    lo, hi = reach
    up, stop = session.up, session.stop
    spans: dict[str, StartedSpan] = {
        request_id: (request_id, at, seq, None, None)
        for request_id, (at, seq) in summary.in_flight.items()
        if _in_session(at, session)
    }
    for span in started:
        request_id, at, seq, finished_at, _ = span
        if at < up or (stop is not None and at > stop):  # not _in_session, inlined
            continue
        if finished_at is not None and lo <= finished_at <= hi and _in_session(finished_at, session):
            spans[request_id] = span
        else:
            spans[request_id] = (request_id, at, seq, None, None)
    return list(spans.values())
