"""The rollup-backed dispute lookup (R25, R27) answers exactly what reading every entry of each workload answers.

The lookup reads a session's lifecycle and only the requests near the window, and takes the R25 split from the
rollups' serving union (storage/sql/rollup_serving.py). These tests hold it to the whole-workload reconstruction on
random endpoint histories appended in shuffled batches (R22: any order), irregular requests included (R26), and
check the hand-computed split of one long replica.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from ledger.dispute import DisputeQuery, NoInvoices, Reconstruction, reconstruct, reconstruct_charges
from ledger.intake import Ledger
from ledger.timeutil import format_micros
from ledger.usage import RollupFollower
from storage.sql import SqlStore
from storage.sql.rollup_serving import RequestSummary, ServingUnion, _hour_pieces, _pack, merge
from storage.sql.rollups import UsageRollups
from storage.sql.schema import rollup_request_spans
from tests.conftest import FixedClock
from tests.test_dispute_reconstruction import at, lifecycle_day, lookup

SECOND = 1_000_000
BASE = 1_790_000_000 * SECOND  # 2026-09-21, well before the test clock


def _event(n: int, type: str, at: int, workload: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"ev-{n:05d}",
        "org_id": "acme",
        "endpoint_id": "ep-1",
        "workload_id": workload,
        "workload_kind": "SERVING",
        "instance_type": "A100",
        "type": type,
        "occurred_at": format_micros(at),
        **fields,
    }


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """One endpoint: a few replicas over a few hours, each with requests, some unfinished, some irregular, some
    development deployments; sometimes the replicas reuse each other's request IDs."""
    events: list[dict[str, Any]] = []
    shared_ids = draw(st.booleans())

    def add(type: str, at: int, workload: str, **fields: Any) -> None:
        events.append(_event(len(events), type, at, workload, **fields))

    for w in range(draw(st.integers(1, 3))):
        workload = f"wl-{w}"
        up = BASE + draw(st.integers(0, 4 * 3600)) * SECOND
        add("WORKLOAD_SCHEDULED", up - 30 * SECOND, workload)
        add("WORKLOAD_UP", up, workload)
        ready = up + draw(st.integers(0, 120)) * SECOND
        add("WORKLOAD_READY", ready, workload)
        life = draw(st.integers(60, 3 * 3600)) * SECOND
        stopped = draw(st.booleans())
        for r in range(draw(st.integers(0, 25))):
            start = ready + draw(st.integers(0, life // SECOND)) * SECOND + draw(st.integers(0, 999_999))
            request = f"req-{r}" if shared_ids else f"req-{w}-{r}"
            add("REQUEST_STARTED", start, workload, request_id=request)
            finish = draw(st.sampled_from(["normal", "normal", "normal", "long", "never"]))
            if finish == "normal":
                add("REQUEST_FINISHED", start + draw(st.integers(0, 90 * SECOND)), workload, request_id=request)
            elif finish == "long":
                add("REQUEST_FINISHED", start + draw(st.integers(0, 2 * 3600)) * SECOND, workload, request_id=request)
        irregular = draw(st.sampled_from([None, None, None, "twice", "orphan", "after-stop"]))
        started = [e for e in events if e["type"] == "REQUEST_STARTED" and e["workload_id"] == workload]
        if irregular == "twice" and started:
            first = started[0]
            add("REQUEST_STARTED", BASE + 5 * 3600 * SECOND, workload, request_id=first["request_id"])
        elif irregular == "orphan":
            add("REQUEST_FINISHED", ready + 10 * SECOND, workload, request_id=f"req-{w}-ghost")
        if stopped:
            stop = ready + life
            add("WORKLOAD_STOPPED", stop, workload, stop_reason=draw(st.sampled_from(["SCALED_DOWN", "OOM"])))
            if irregular == "after-stop":
                add("REQUEST_STARTED", stop + SECOND, workload, request_id=f"req-{w}-late")
            if draw(st.booleans()):  # a finish logged after the replica stopped (R4, R26)
                add("REQUEST_STARTED", stop - 5 * SECOND, workload, request_id=f"req-{w}-cut")
                add("REQUEST_FINISHED", stop + 3 * SECOND, workload, request_id=f"req-{w}-cut")
        if draw(st.integers(0, 4)) == 0:  # a development deployment (R8): its requests bill nothing
            for event in events:
                if event["workload_id"] == workload:
                    event["development"] = True
        # Storage samples (R13, R14): mostly of the default 300 s, some of hours, ending up to a few hours past the
        # replica's life, so an interval may cover a window the replica's other entries are far from.
        for _ in range(draw(st.integers(1, 3))):
            interval = draw(st.sampled_from([300, 300, 60, 3600, 6 * 3600]))
            volume = draw(st.booleans())
            add(
                "STORAGE_SAMPLE",
                up + draw(st.integers(1, 6 * 3600)) * SECOND,
                workload,
                storage_kind="NETWORK_VOLUME" if volume else "CONTAINER_DISK",
                gigabytes="20",
                interval_seconds=interval,
                **({"volume_id": f"vol-{w}"} if volume else {}),
            )
    return events


def comparable(result: Reconstruction) -> Reconstruction:
    """The reconstruction with each session's per-request shares left out of its split: the rollup lookup keeps
    only the requests near the window there (those listed, compared in `requests`); every other field must match."""
    sessions = tuple(
        dataclasses.replace(
            charge,
            session=dataclasses.replace(
                charge.session, attribution=dataclasses.replace(charge.session.attribution, requests=())
            ),
        )
        if charge.session.attribution is not None
        else charge
        for charge in result.sessions
    )
    return dataclasses.replace(result, sessions=sessions)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(),
    seed=st.integers(0, 2**32 - 1),
    window=st.tuples(st.integers(0, 8 * 3600), st.integers(60, 3 * 3600)),
    kind=st.sampled_from(["window", "request", "window and request"]),
)
def test_r25_r27_rollup_lookup_equals_reading_every_entry(
    history: list[dict[str, Any]], seed: int, window: tuple[int, int], kind: str
) -> None:
    """By endpoint and window, by a request ID alone, and by both (the request perhaps far from the window)."""
    rng = random.Random(seed)
    shuffled = history[:]
    rng.shuffle(shuffled)
    cut = rng.randint(0, len(shuffled))
    clock = FixedClock(BASE + 12 * 3600 * SECOND)
    with tempfile.TemporaryDirectory() as tmp:
        store = SqlStore(f"sqlite:///{Path(tmp) / 'ledger.db'}", clock=clock)
        try:
            ledger = Ledger(store, clock=clock)
            query = window_query = DisputeQuery(
                org_id="acme",
                endpoint_id="ep-1",
                start=BASE + window[0] * SECOND,
                end=BASE + (window[0] + window[1]) * SECOND,
            )
            started = sorted({e["request_id"] for e in history if e["type"] == "REQUEST_STARTED"})
            if kind != "window" and started:
                asked = rng.choice(started)
                query = (
                    DisputeQuery(org_id="acme", request_id=asked)
                    if kind == "request"
                    else dataclasses.replace(query, request_id=asked)
                )
            # Two batches with a lookup between them: the rollups catch up twice, the second time with late events
            # of requests they already summarised (R22).
            for batch in (shuffled[:cut], shuffled[cut:]):
                if batch:
                    ledger.append_events(batch)
                    lookup(ledger, window_query, with_proofs=False)  # the request may come later
            rollups = UsageRollups(store)
            follower = RollupFollower(rollups)
            prices = ledger.price_history()
            plans = ledger.account_history("acme").plans()
            now = clock()

            def index(org_id: str) -> UsageRollups:
                follower.catch_up(org_id, prices, plans)
                return rollups

            whole = reconstruct(store, prices, query, now, invoices=lambda _: NoInvoices())
            indexed = reconstruct(store, prices, query, now, invoices=lambda _: NoInvoices(), index=index)
            assert comparable(indexed) == comparable(whole)
        finally:
            store.close()


def test_r25_split_of_a_long_replica_comes_from_the_serving_union(ledger: Ledger) -> None:
    """A replica up 10:00-14:00 (4 h): READY at 10:02 (R2 cold start 120 s), requests at 10:30-10:31 and
    10:30:30-10:32 (union 10:30-10:32 = 120 s) and 13:00-13:00:10 (10 s): serving 130 s, idle 14,400 - 120 - 130 =
    14,150 s. A100 FLEX $0.00076/s: cold start $0.0912, serving $0.0988, idle $10.754, rounding 0 (stopped on a
    minute). A lookup of 13:00 +-30 min reads none of the 10:30 requests, yet splits the whole session."""
    hour = 3600 * SECOND
    t0 = BASE + 10 * hour
    steps = [
        ("WORKLOAD_UP", t0, {}),
        ("WORKLOAD_READY", t0 + 120 * SECOND, {}),
        ("REQUEST_STARTED", t0 + 1800 * SECOND, {"request_id": "r1"}),
        ("REQUEST_STARTED", t0 + 1830 * SECOND, {"request_id": "r2"}),
        ("REQUEST_FINISHED", t0 + 1860 * SECOND, {"request_id": "r1"}),
        ("REQUEST_FINISHED", t0 + 1920 * SECOND, {"request_id": "r2"}),
        ("REQUEST_STARTED", t0 + 3 * hour, {"request_id": "r3"}),
        ("REQUEST_FINISHED", t0 + 3 * hour + 10 * SECOND, {"request_id": "r3"}),
        ("WORKLOAD_STOPPED", t0 + 4 * hour, {"stop_reason": "SCALED_DOWN"}),
    ]
    ledger.append_events([_event(n, type, at, "wl-long", **extra) for n, (type, at, extra) in enumerate(steps)])
    half_hour = 1800 * SECOND
    around = t0 + 3 * hour
    query = DisputeQuery(org_id="acme", endpoint_id="ep-1", start=around - half_hour, end=around + half_hour)
    result = lookup(ledger, query, with_proofs=False)
    (charge,) = result.sessions
    split = charge.session.attribution
    assert split is not None
    assert (split.cold_start_micros, split.serving_micros, split.idle_micros, split.rounding_micros) == (
        120 * SECOND,
        130 * SECOND,
        14_150 * SECOND,
        0,
    )
    assert (split.cold_start_amount, split.serving_amount, split.idle_amount, split.rounding_amount) == (
        Decimal("0.0912"),
        Decimal("0.0988"),
        Decimal("10.754"),
        Decimal("0"),
    )
    assert charge.request_count == 3
    assert [r.request_id for r in charge.requests] == ["r3"]
    # Only the lifecycle and r3's entries were read and cited, never the 10:30 requests (sequences 2-5).
    assert {e.ref.sequence for e in result.entries if e.ref.log_id == "org/acme"} == {0, 1, 6, 7, 8}


def test_r26_r27_a_reused_request_id_far_from_the_window_is_not_in_another_replicas_window(ledger: Ledger) -> None:
    """Two replicas up 00:00-04:00. wl-a serves r-1 at 00:01 (5 s); wl-b serves another r-1 at 02:00 (5 s, the ID
    reused) and r-2 at 03:00:10 (5 s). A lookup of r-1 with the window 03:00-03:01: the request asked for is
    wl-a's (the first start, R27), and wl-b's r-1, finished an hour before the window, is no request of wl-b's in
    it: wl-b lists r-2 alone, and the lookup from the rollups answers as reading every entry does."""
    hour, minute = 3600 * SECOND, 60 * SECOND
    steps = [
        ("WORKLOAD_UP", 0, "wl-a", {}),
        ("WORKLOAD_READY", 10 * SECOND, "wl-a", {}),
        ("REQUEST_STARTED", minute, "wl-a", {"request_id": "r-1"}),
        ("REQUEST_FINISHED", minute + 5 * SECOND, "wl-a", {"request_id": "r-1"}),
        ("WORKLOAD_UP", 0, "wl-b", {}),
        ("WORKLOAD_READY", 10 * SECOND, "wl-b", {}),
        ("REQUEST_STARTED", 2 * hour, "wl-b", {"request_id": "r-1"}),
        ("REQUEST_FINISHED", 2 * hour + 5 * SECOND, "wl-b", {"request_id": "r-1"}),
        ("REQUEST_STARTED", 3 * hour + 10 * SECOND, "wl-b", {"request_id": "r-2"}),
        ("REQUEST_FINISHED", 3 * hour + 15 * SECOND, "wl-b", {"request_id": "r-2"}),
        ("WORKLOAD_STOPPED", 4 * hour, "wl-a", {"stop_reason": "SCALED_DOWN"}),
        ("WORKLOAD_STOPPED", 4 * hour, "wl-b", {"stop_reason": "SCALED_DOWN"}),
    ]
    ledger.append_events(
        [_event(n, type, BASE + at, workload, **extra) for n, (type, at, workload, extra) in enumerate(steps)]
    )
    query = DisputeQuery(
        org_id="acme", endpoint_id="ep-1", request_id="r-1", start=BASE + 3 * hour, end=BASE + 3 * hour + minute
    )
    result = lookup(ledger, query, with_proofs=False)
    assert result.request is not None and result.request.workload_id == "wl-a"
    listed = {charge.session.workload_id: [r.request_id for r in charge.requests] for charge in result.sessions}
    assert listed == {"wl-a": [], "wl-b": ["r-2"]}
    assert [c.requests_in_window for c in result.sessions] == [0, 1]
    store = ledger.store
    assert isinstance(store, SqlStore)
    whole = reconstruct(store, ledger.price_history(), query, ledger.clock(), invoices=lambda _: NoInvoices())
    assert comparable(result) == comparable(dataclasses.replace(whole, notes=result.notes))


def test_r25_r28_an_unfinished_request_far_from_the_window_runs_to_its_open_sessions_evidence(ledger: Ledger) -> None:
    """Found by hypothesis. wl-0 is up and READY at 00:06:31 and never stops; r-1 starts then and never finishes; a
    CONTAINER_DISK sample at 00:06:32 is the last evidence of running (R28). The open session bills the minute
    started before its evidence (R10), and r-1 is in flight to the end of it (R25): 60 s alone, A100 FLEX
    $0.00076/s x 60 = $0.0456. Looked up with the window 00:00-00:01, which the session does not meet: the
    rollups must read the asked request's workload's evidence too, not rate it from its lifecycle entries alone
    (which ended the session, and r-1's flight, at UP: 0 s)."""
    up = BASE + 391 * SECOND
    steps = [
        ("WORKLOAD_UP", up, {}),
        ("WORKLOAD_READY", up, {}),
        ("REQUEST_STARTED", up, {"request_id": "r-1"}),
        ("STORAGE_SAMPLE", up + SECOND, {"storage_kind": "CONTAINER_DISK", "gigabytes": "20", "interval_seconds": 300}),
    ]
    ledger.append_events([_event(n, type, at, "wl-0", **extra) for n, (type, at, extra) in enumerate(steps)])
    query = DisputeQuery(org_id="acme", endpoint_id="ep-1", request_id="r-1", start=BASE, end=BASE + 60 * SECOND)
    result = lookup(ledger, query, with_proofs=False)
    request = result.request
    assert request is not None and request.workload_id == "wl-0"
    assert (request.in_flight_from, request.in_flight_to) == (up, up + 60 * SECOND)
    assert (request.attributed_micros, request.attributed_amount) == (60 * SECOND, Fraction(Decimal("0.0456")))
    store = ledger.store
    assert isinstance(store, SqlStore)
    whole = reconstruct(store, ledger.price_history(), query, ledger.clock(), invoices=lambda _: NoInvoices())
    assert comparable(result) == comparable(dataclasses.replace(whole, notes=result.notes))


def reused_while_another_replica_uses_the_id() -> list[list[dict[str, Any]]]:
    """Two batches (found by hypothesis): wl-a serves r-1 at 00:01 (5 s) in the first; in the second wl-a starts r-1
    again at 02:00 (R26: already started) while wl-b, up since 00:00, serves its own r-1 at 00:30 (5 s). Both stop at
    04:00. The second catch-up is unsure of r-1 on both replicas: neither has it in flight."""
    hour, minute = 3600 * SECOND, 60 * SECOND
    first = [
        ("WORKLOAD_UP", 0, "wl-a", {}),
        ("WORKLOAD_READY", 10 * SECOND, "wl-a", {}),
        ("REQUEST_STARTED", minute, "wl-a", {"request_id": "r-1"}),
        ("REQUEST_FINISHED", minute + 5 * SECOND, "wl-a", {"request_id": "r-1"}),
    ]
    second = [
        ("REQUEST_STARTED", 2 * hour, "wl-a", {"request_id": "r-1"}),
        ("WORKLOAD_UP", 0, "wl-b", {}),
        ("WORKLOAD_READY", 10 * SECOND, "wl-b", {}),
        ("REQUEST_STARTED", 30 * minute, "wl-b", {"request_id": "r-1"}),
        ("REQUEST_FINISHED", 30 * minute + 5 * SECOND, "wl-b", {"request_id": "r-1"}),
        ("WORKLOAD_STOPPED", 4 * hour, "wl-a", {"stop_reason": "SCALED_DOWN"}),
        ("WORKLOAD_STOPPED", 4 * hour, "wl-b", {"stop_reason": "SCALED_DOWN"}),
    ]
    numbered = list(enumerate([*first, *second]))
    return [
        [_event(n, type, BASE + at, workload, **extra) for n, (type, at, workload, extra) in part]
        for part in (numbered[: len(first)], numbered[len(first) :])
    ]


def test_r26_r27_a_replica_restarting_its_closed_request_is_an_anomaly_while_another_replica_uses_the_id(
    ledger: Ledger,
) -> None:
    """wl-a's second start of r-1 (entry #4) is an R26 anomaly of wl-a: the rollups caught up between the batches
    must mark wl-a's requests irregular, so the lookup reads wl-a whole and lists the anomaly, as reading every entry
    does. (They marked only wl-b, the last replica unsure of r-1, and the lookup answered with no anomaly.)"""
    hour = 3600 * SECOND
    query = DisputeQuery(org_id="acme", endpoint_id="ep-1", start=BASE + hour, end=BASE + 3 * hour)
    for batch in reused_while_another_replica_uses_the_id():
        ledger.append_events(batch)
        result = lookup(ledger, query, with_proofs=False)  # the rollups catch up after each batch
    assert [(a.anomaly.seq, a.anomaly.workload_id) for a in result.anomalies] == [(4, "wl-a")]
    assert "R26" in result.anomalies[0].anomaly.reason
    assert "request r-1 already started at entry #2" in result.anomalies[0].anomaly.reason
    store = ledger.store
    assert isinstance(store, SqlStore)
    whole = reconstruct(store, ledger.price_history(), query, ledger.clock(), invoices=lambda _: NoInvoices())
    assert comparable(result) == comparable(dataclasses.replace(whole, notes=result.notes))


def test_r8_r26_r27_a_development_replicas_late_finish_is_read_alone(ledger: Ledger, monkeypatch: Any) -> None:
    """A development replica (R8) up 00:00-04:00 serves r-1 at 00:10 (5 s) and r-2 from 03:59:50; it is OOM-killed
    at 04:00 and r-2's finish is logged at 04:00:20, after the stop. The engine makes nothing of r-1 and r-2's start
    (R8: never billed) and an R26 anomaly of the late finish (entry #6, after the stop at entry #5). A lookup of
    03:30-04:30 answers that from the lifecycle the rollups keep and the one late entry: the replica is never read
    whole, and the answer is the one reading every entry gives."""
    hour, minute = 3600 * SECOND, 60 * SECOND
    steps = [
        ("WORKLOAD_UP", 0, {}),
        ("WORKLOAD_READY", minute, {}),
        ("REQUEST_STARTED", 10 * minute, {"request_id": "r-1"}),
        ("REQUEST_FINISHED", 10 * minute + 5 * SECOND, {"request_id": "r-1"}),
        ("REQUEST_STARTED", 4 * hour - 10 * SECOND, {"request_id": "r-2"}),
        ("WORKLOAD_STOPPED", 4 * hour, {"stop_reason": "OOM"}),
        ("REQUEST_FINISHED", 4 * hour + 20 * SECOND, {"request_id": "r-2"}),
    ]
    ledger.append_events(
        [_event(n, type, BASE + at, "wl-dev", development=True, **extra) for n, (type, at, extra) in enumerate(steps)]
    )
    store = ledger.store
    assert isinstance(store, SqlStore)
    read_whole: list[list[str]] = []
    workload_entries = store.workload_entries

    def recorded(log_id: str, workload_ids: Any) -> Any:
        read_whole.append(list(workload_ids))
        return workload_entries(log_id, workload_ids)

    monkeypatch.setattr(store, "workload_entries", recorded)
    query = DisputeQuery(
        org_id="acme", endpoint_id="ep-1", start=BASE + 3 * hour + 30 * minute, end=BASE + 4 * hour + 30 * minute
    )
    result = lookup(ledger, query, with_proofs=False)
    assert read_whole == []
    assert result.sessions == ()
    assert [(z.rule, z.workload_id, z.start, z.end) for z in result.zero_lines if z.rule == "R8"] == [
        ("R8", "wl-dev", BASE, BASE + 4 * hour)
    ]
    (anomaly,) = result.anomalies
    assert (anomaly.anomaly.seq, anomaly.ref.sequence) == (6, 6)
    assert "request r-2 after the workload stopped at entry #5" in anomaly.anomaly.reason
    monkeypatch.undo()
    whole = reconstruct(store, ledger.price_history(), query, ledger.clock(), invoices=lambda _: NoInvoices())
    assert comparable(result) == comparable(dataclasses.replace(whole, notes=result.notes))


def test_serving_union_merges_overlapping_and_touching_intervals() -> None:
    assert merge([(5, 9), (1, 3), (3, 4), (8, 12), (20, 20)]) == [(1, 4), (5, 12)]


@settings(max_examples=200, deadline=None)
@given(
    spans=st.lists(st.tuples(st.integers(0, 72 * 3600), st.integers(0, 3 * 3600)), max_size=40),
    window=st.tuples(st.integers(-3600, 80 * 3600), st.integers(0, 80 * 3600)),
)
def test_r25_serving_union_measure_from_hours_or_from_the_total_less_the_rest(
    spans: list[tuple[int, int]], window: tuple[int, int]
) -> None:
    """ServingUnion.measure reads a span's own hour rows, or the summary's total less the hours outside the span
    (for a span covering most of a days-long session); both must equal the measure of the merged intervals."""
    closed = [(BASE + a * SECOND, BASE + (a + d) * SECOND) for a, d in spans]
    union = merge(closed)
    rows: dict[int, list[tuple[int, int]]] = {}
    for interval in union:
        for hour, piece in _hour_pieces(interval):
            rows.setdefault(hour, []).append(piece)
    table = [(hour, sum(b - a for a, b in pieces), _pack(pieces)) for hour, pieces in sorted(rows.items())]
    summary = RequestSummary(
        count=len(closed),
        serving_micros=sum(b - a for a, b in union),
        first_at=min((a for a, _ in closed), default=None),
        last_at=max((b for _, b in closed), default=None),
    )

    def read(_statement: Any, params: dict[str, Any]) -> list[Any]:
        return [row for row in table if params["start"] <= row[0] < params["end"]]

    start = BASE + window[0] * SECOND
    end = start + window[1] * SECOND
    expected = sum(max(0, min(b, end) - max(a, start)) for a, b in union)
    assert ServingUnion(read, "org/acme", "wl-1", summary).measure(start, end) == expected


def test_r25_r27_the_window_lists_its_first_20_requests_across_replicas(ledger: Ledger) -> None:
    """Three replicas of ep-1 up 00:00-02:00 (READY at 00:00:10), each serving a 2 s request every minute, wl-w's
    k-th starting at 00:00:20 + k min + w s (k = 0..59). The window 00:30-01:00 has k = 30..59 of each in flight,
    90 requests interleaved by start: the answer lists the endpoint's first 20 (k = 30..35 of all three, then
    k = 36 of wl-0 and wl-1: 7, 7 and 6) under their sessions, each session still counts its 30 in the window and
    its 60 in all (R25: the split uses every one), and r-2-59, asked for and the window's last, is answered apart.
    The lookup from the rollups answers as reading every entry does."""
    minute = 60 * SECOND
    steps: list[tuple[str, int, str, dict[str, Any]]] = []
    for w in range(3):
        workload = f"wl-{w}"
        steps += [("WORKLOAD_UP", 0, workload, {}), ("WORKLOAD_READY", 10 * SECOND, workload, {})]
        for k in range(60):
            at = 20 * SECOND + k * minute + w * SECOND
            steps += [
                ("REQUEST_STARTED", at, workload, {"request_id": f"r-{w}-{k}"}),
                ("REQUEST_FINISHED", at + 2 * SECOND, workload, {"request_id": f"r-{w}-{k}"}),
            ]
        steps.append(("WORKLOAD_STOPPED", 120 * minute, workload, {"stop_reason": "SCALED_DOWN"}))
    ledger.append_events(
        [_event(n, type, BASE + at, workload, **extra) for n, (type, at, workload, extra) in enumerate(steps)]
    )
    query = DisputeQuery(
        org_id="acme", endpoint_id="ep-1", request_id="r-2-59", start=BASE + 30 * minute, end=BASE + 60 * minute
    )
    result = lookup(ledger, query, with_proofs=False)
    listed = {charge.session.workload_id: [r.request_id for r in charge.requests] for charge in result.sessions}
    assert listed == {
        "wl-0": [f"r-0-{k}" for k in range(30, 37)],
        "wl-1": [f"r-1-{k}" for k in range(30, 37)],
        "wl-2": [f"r-2-{k}" for k in range(30, 36)],
    }
    assert [c.requests_in_window for c in result.sessions] == [30, 30, 30]
    assert [c.request_count for c in result.sessions] == [60, 60, 60]
    assert result.request is not None and result.request.workload_id == "wl-2"
    assert result.request.started_at == BASE + 20 * SECOND + 59 * minute + 2 * SECOND
    # The listed requests' entries are cited, and the one asked for; the 69 others in the window are not.
    cited = {e.request_id for e in result.entries if e.request_id}
    assert cited == {r for names in listed.values() for r in names} | {"r-2-59"}
    store = ledger.store
    assert isinstance(store, SqlStore)
    whole = reconstruct(store, ledger.price_history(), query, ledger.clock(), invoices=lambda _: NoInvoices())
    assert comparable(result) == comparable(dataclasses.replace(whole, notes=result.notes))


def test_r25_r27_a_lookup_given_no_rollups_reads_every_entry_and_answers_alike(ledger: Ledger) -> None:
    """The server passes the store's usage rollups to each lookup (server/support_service.py). Given none, a lookup
    rates every workload touching the window from all its entries (R25 over every request) and gives the same
    answer: by endpoint and window, and by a request ID alone."""
    ledger.append_events(lifecycle_day().items)
    for query in (
        DisputeQuery(endpoint_id="ep-chat", start=at("10:00:00"), end=at("11:00:00")),
        DisputeQuery(request_id="req-4"),
    ):
        whole = reconstruct_charges(ledger, query)
        assert whole.sessions and whole.entries
        assert comparable(whole) == comparable(lookup(ledger, query))


def test_r26_request_spans_keep_each_requests_first_start_and_finish_across_catch_ups(db_url: str) -> None:
    """rollup_request_spans, which lookups cite (R25, R27): each request's first start and first finish, whichever
    catch-up saw them. A later start of a closed ID (reused, R26) changes nothing recorded; a finish with no start is
    kept alone. PostgreSQL writes a chunk's spans as one statement of arrays, SQLite row by row: same rows."""
    clock = FixedClock(BASE + 12 * 3600 * SECOND)
    store = SqlStore(db_url, clock=clock)
    try:
        ledger = Ledger(store, clock=clock)
        follower = RollupFollower(UsageRollups(store))

        def t(seconds: int) -> int:
            return BASE + seconds * SECOND

        def catch_up() -> None:
            follower.catch_up("acme", ledger.price_history(), ledger.account_history("acme").plans())

        first = ledger.append_events(
            [
                _event(0, "WORKLOAD_UP", t(0), "wl-1"),
                _event(1, "WORKLOAD_READY", t(1), "wl-1"),
                _event(2, "REQUEST_STARTED", t(10), "wl-1", request_id="r1"),
                _event(3, "REQUEST_STARTED", t(11), "wl-1", request_id="r2"),
            ]
        )
        catch_up()
        second = ledger.append_events(
            [
                _event(4, "REQUEST_FINISHED", t(20), "wl-1", request_id="r1"),
                _event(5, "REQUEST_STARTED", t(30), "wl-1", request_id="r1"),  # r1 again, once closed
                _event(6, "REQUEST_FINISHED", t(40), "wl-1", request_id="r3"),  # its start never came
            ]
        )
        catch_up()
        spans = rollup_request_spans.c
        with store.reading() as conn:
            rows = conn.execute(
                select(
                    spans.request_id,
                    spans.started_at,
                    spans.started_seq,
                    spans.started_hash,
                    spans.finished_at,
                    spans.finished_seq,
                    spans.finished_hash,
                )
                .where(spans.log_id == "org/acme", spans.workload_id == "wl-1")
                .order_by(spans.request_id)
            ).all()

        def mark(appended: Any, seconds: int) -> tuple[int, int, bytes]:
            return t(seconds), appended.sequence, appended.entry_hash

        none = (None, None, None)
        assert [(r[0], tuple(r[1:4]), tuple(r[4:7])) for r in rows] == [
            ("r1", mark(first[2], 10), mark(second[0], 20)),
            ("r2", mark(first[3], 11), none),
            ("r3", none, mark(second[2], 40)),
        ]
    finally:
        store.close()
