"""Invariants of rating (hypothesis): arrival order and redelivery do not matter (R24), windows add up (R10),
R25 parts add up, and billed units match a unit-by-unit reading of R10 and R12."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.events import EventType, StopReason, StorageKind, UsageEvent, WorkerType, WorkloadKind
from ledger.plans import Granularity, Plan, PlanHistory
from ledger.pricebook import InstanceRate, PriceBook, PriceHistory, default_price_book
from ledger.rating import BucketSize, LoggedEvent, OrgRating, bucket_usage, rate_org, rate_workload, usage_in_window
from ledger.timeutil import parse_rfc3339_micros

T0 = parse_rfc3339_micros("2026-10-05T09:00:00Z")
SECOND = 1_000_000
HOUR = 3600 * SECOND
INSTANCE_TYPES = ("A100", "L4", "B200")

PROPERTY_SETTINGS = settings(deadline=None, max_examples=150)


@dataclass(frozen=True)
class Org:
    events: tuple[LoggedEvent, ...]
    prices: PriceHistory
    plans: PlanHistory
    now: int

    def rate(self, events: Sequence[LoggedEvent] | None = None) -> OrgRating:
        return rate_org(self.events if events is None else events, self.prices, self.plans, as_of=self.now)


def offsets(limit_seconds: int) -> st.SearchStrategy[int]:
    """Microsecond offsets, often on a half-second grid so that events tie and units end exactly."""
    return st.one_of(
        st.integers(0, 2 * limit_seconds).map(lambda k: k * SECOND // 2),
        st.integers(0, limit_seconds * SECOND),
    )


def within(limit: int) -> st.SearchStrategy[int]:
    """An offset in [0, limit] microseconds, often a whole number of half seconds."""
    return st.one_of(st.integers(0, limit // (SECOND // 2)).map(lambda k: k * SECOND // 2), st.integers(0, limit))


@st.composite
def price_histories(draw: st.DrawFn) -> PriceHistory:
    base = default_price_book()
    books = [base]
    for version in range(1, draw(st.integers(0, 3)) + 1):
        rates = dict(base.rates)
        for name in INSTANCE_TYPES:
            flex, active = (Decimal(draw(st.integers(1, 300))).scaleb(-5) for _ in range(2))
            rates[name] = InstanceRate(flex, active)
        books.append(PriceBook(T0 + draw(offsets(2400)), rates, version=version * 10))
    return PriceHistory(books)


@st.composite
def plan_histories(draw: st.DrawFn) -> PlanHistory:
    plans = [
        Plan(draw(st.just(0) | offsets(1800).map(lambda o: T0 + o)), draw(st.sampled_from(Granularity)), 100 + index)
        for index in range(draw(st.integers(0, 2)))
    ]
    return PlanHistory(plans)


@st.composite
def workload_events(draw: st.DrawFn, workload_id: str) -> list[UsageEvent]:
    kind = draw(
        st.sampled_from((WorkloadKind.SERVING, WorkloadKind.SERVING, WorkloadKind.BUILD, WorkloadKind.TRAINING))
    )
    identity = {
        "org_id": "org-1",
        "endpoint_id": "ep-" + draw(st.sampled_from("ab")),
        "workload_id": workload_id,
        "workload_kind": kind,
        "instance_type": draw(st.sampled_from(INSTANCE_TYPES)),
        "worker_type": draw(st.sampled_from(WorkerType)),
        "development": draw(st.sampled_from((False, False, False, True))),
    }
    facts: list[dict[str, object]] = []

    def fact(type: EventType, at: int, **fields: object) -> None:
        facts.append({"type": type, "occurred_at": at, **fields})

    up = T0 + draw(offsets(1800))
    length = draw(st.integers(0, 9))  # 1 in 10 sessions lasts 0 s (R10 bills nothing), 1 in 5 up to an hour
    duration = 0 if length == 0 else SECOND + draw(offsets(600 if length < 8 else 3600))
    if draw(st.booleans()):
        fact(EventType.WORKLOAD_SCHEDULED, up - draw(offsets(30)))
    if draw(st.integers(0, 9)) == 0:
        fact(EventType.WORKLOAD_BOOT_FAILED, up + duration)  # failed boot, no UP (R5)
    else:
        fact(EventType.WORKLOAD_UP, up)
        ending = draw(st.sampled_from(("stopped", "stopped", "boot_failed", "open")))
        if ending == "stopped":
            fact(EventType.WORKLOAD_STOPPED, up + duration, stop_reason=draw(st.sampled_from(StopReason)))
        elif ending == "boot_failed":
            fact(EventType.WORKLOAD_BOOT_FAILED, up + duration)
        if draw(st.integers(0, 3)) > 0:
            fact(EventType.WORKLOAD_READY, up + draw(within(duration + SECOND)))
    for index in range(draw(st.integers(0, 5 if kind is WorkloadKind.SERVING else 1))):
        # Mostly inside the session; a few before the UP or after the stop (R26).
        start = up + draw(within(duration)) + draw(st.sampled_from((0, 0, 0, 0, -2 * SECOND, 2 * SECOND)))
        fact(EventType.REQUEST_STARTED, start, request_id=f"r{index}")
        if draw(st.integers(0, 3)) > 0:
            fact(EventType.REQUEST_FINISHED, start + draw(within(duration)), request_id=f"r{index}")
    for _ in range(draw(st.integers(0, 2))):  # R26 material: stray lifecycle events
        stray = draw(st.sampled_from([t for t in EventType if t is not EventType.HEARTBEAT]))  # org-level (R28)
        fact(stray, up + draw(offsets(900)) - 60 * SECOND)
    for _ in range(draw(st.integers(0, 2))):
        storage_kind = draw(st.sampled_from(StorageKind))
        fact(
            EventType.STORAGE_SAMPLE,
            up + draw(offsets(900)),
            storage_kind=storage_kind,
            volume_id="vol-1" if storage_kind is StorageKind.NETWORK_VOLUME else None,
            gigabytes=Decimal(draw(st.integers(0, 3000))).scaleb(-draw(st.integers(0, 2))),
            interval_seconds=draw(st.sampled_from((None, 1, 300, 3600))),
        )
    events = []
    for index, raw in enumerate(facts):
        fields = dict(raw)
        type_ = fields.pop("type")
        assert isinstance(type_, EventType)
        if type_ is EventType.WORKLOAD_STOPPED:
            fields.setdefault("stop_reason", StopReason.SCALED_DOWN)
        if type_ in (EventType.REQUEST_STARTED, EventType.REQUEST_FINISHED):
            fields.setdefault("request_id", "stray")
        if type_ is EventType.STORAGE_SAMPLE and "storage_kind" not in fields:
            fields.update(storage_kind=StorageKind.CONTAINER_DISK, gigabytes=Decimal(1))
        events.append(UsageEvent(event_id=f"{workload_id}-{index}", type=type_, **identity, **fields))  # type: ignore[arg-type]
    return events


@st.composite
def orgs(draw: st.DrawFn) -> Org:
    events = [event for w in range(draw(st.integers(1, 3))) for event in draw(workload_events(f"w{w}"))]
    seqs = draw(st.permutations(range(1, len(events) + 1)))  # log order need not follow occurred_at
    return Org(
        events=tuple(zip(events, seqs, strict=True)),
        prices=draw(price_histories()),
        plans=draw(plan_histories()),
        now=T0 + draw(offsets(4000)),
    )


@PROPERTY_SETTINGS
@given(org=orgs(), data=st.data())
def test_r24_rating_is_independent_of_arrival_order_and_duplicate_deliveries(org: Org, data: st.DataObject) -> None:
    expected = org.rate()
    shuffled = list(data.draw(st.permutations(org.events)))
    redelivered = data.draw(st.lists(st.sampled_from(org.events), max_size=4))
    # A redelivery may carry the original seq or, if the store appended it again, a later one: counted once.
    arrivals = shuffled + redelivered + [(event, seq + 1000) for event, seq in redelivered]
    assert org.rate(arrivals) == expected
    for workload in expected.workloads:
        own = [item for item in arrivals if item[0].workload_id == workload.workload_id]
        assert rate_workload(own, org.prices, org.plans, as_of=org.now) == workload


@PROPERTY_SETTINGS
@given(org=orgs(), cuts=st.lists(st.integers(T0 - HOUR, T0 + 3 * HOUR), min_size=2, max_size=6))
def test_r10_units_over_sub_windows_add_up_to_the_whole_window(org: Org, cuts: list[int]) -> None:
    rating = org.rate()
    points = sorted(cuts)
    whole = usage_in_window(rating.sessions, rating.storage, points[0], points[-1])
    parts = [usage_in_window(rating.sessions, rating.storage, a, b) for a, b in pairwise(points)]
    for size in BucketSize:
        for split in (parts, bucket_usage(rating.sessions, rating.storage, points[0], points[-1], size)):
            assert sum(p.units for p in split) == whole.units
            assert sum(p.billed_seconds for p in split) == whole.billed_seconds
            assert sum(Fraction(p.compute_amount) for p in split) == Fraction(whole.compute_amount)
            assert sum(Fraction(p.storage_amount) for p in split) == Fraction(whole.storage_amount)
    everything = usage_in_window(rating.sessions, rating.storage, 0, T0 + 1000 * HOUR)
    assert everything.units == sum(s.billed_units for s in rating.sessions)
    assert Fraction(everything.compute_amount) == sum(Fraction(s.amount) for s in rating.sessions)
    assert Fraction(everything.storage_amount) == sum(Fraction(c.amount) for c in rating.storage)


@PROPERTY_SETTINGS
@given(org=orgs())
def test_r25_parts_add_up_to_the_billed_quantity(org: Org) -> None:
    for session in org.rate().sessions:
        split = session.attribution
        if session.workload_kind is not WorkloadKind.SERVING:
            assert split is None
            continue
        assert split is not None
        parts = (split.cold_start_micros, split.serving_micros, split.idle_micros, split.rounding_micros)
        assert all(part >= 0 for part in parts)
        assert sum(parts) == session.billed_units * session.unit_seconds * SECOND
        money = (split.cold_start_amount, split.serving_amount, split.idle_amount, split.rounding_amount)
        assert all(part >= 0 for part in money)
        assert sum(Fraction(part) for part in money) == Fraction(session.amount)
        assert sum(r.attributed_micros for r in split.requests) == split.serving_micros
        assert sum(r.attributed_amount for r in split.requests) == Fraction(split.serving_amount)
        if session.is_open:
            assert split.rounding_micros == 0


@PROPERTY_SETTINGS
@given(org=orgs())
def test_r10_r12_runs_match_a_unit_by_unit_reading_of_the_rules(org: Org) -> None:
    for session in org.rate().sessions:
        unit = session.unit_seconds * SECOND
        # R28: an open session runs as far as its workload's latest event shows (never past the as-of cut).
        own = [event.occurred_at for event, _ in org.events if event.workload_id == session.workload_id]
        evidence = max(min(max(own), org.now), session.up)
        end = session.stop if session.stop is not None else evidence
        if session.stop is None:
            assert session.as_of == evidence
        # R10: the fewest whole units covering the session (none for d = 0), counted without division.
        expected_units = 0
        while expected_units * unit < end - session.up:
            expected_units += 1
        assert session.billed_units == expected_units
        # R12: each unit priced by the book in force at its start; runs keep units in order, with no gaps.
        priced = []
        for k in range(session.billed_units):
            book = org.prices.at(session.up + k * unit)
            priced.append((k, session.up + k * unit, book.version, book.rate(session.instance_type)))
        from_runs = [
            (run.first_unit_index + i, run.first_unit_start + i * unit, run.price_version, run.rate_per_second)
            for run in session.runs
            for i in range(run.count)
        ]
        assert from_runs == [(k, start, v, rate.per_second(session.worker_type)) for k, start, v, rate in priced]
        assert all(a.price_version != b.price_version for a, b in pairwise(session.runs))
        expected_amount = sum(
            (Fraction(rate.per_second(session.worker_type)) * session.unit_seconds for *_, rate in priced), Fraction(0)
        )
        assert Fraction(session.amount) == expected_amount
