"""Rating, rule by rule (billing-rules.md R1-R14, R25, R26): every expected unit count and amount is worked out by
hand in the comments and written as a literal, never computed by the code under test."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from ledger.errors import EventConflict, InvalidInput, NotFound
from ledger.events import EventType, StopReason, StorageKind, UsageEvent, WorkerType, WorkloadKind, heartbeat
from ledger.plans import Granularity, Plan, PlanHistory
from ledger.pricebook import InstanceRate, PriceBook, PriceHistory, default_price_book
from ledger.rating import (
    BucketSize,
    LoggedEvent,
    OrgRating,
    Session,
    bucket_usage,
    rate_org,
    rate_workload,
    usage_in_window,
)
from ledger.timeutil import parse_rfc3339_micros

T0 = parse_rfc3339_micros("2026-10-05T09:00:00Z")
HOUR = 3600 * 1_000_000
PRICES = PriceHistory([default_price_book()])
PER_MINUTE = PlanHistory()  # R10: no plan entry means per-minute
PER_SECOND = PlanHistory([Plan(effective_from=0, granularity=Granularity.PER_SECOND, version=7)])
LATER = T0 + 1000 * HOUR  # a "now" long after every closed session

UP = EventType.WORKLOAD_UP
READY = EventType.WORKLOAD_READY
STOPPED = EventType.WORKLOAD_STOPPED
BOOT_FAILED = EventType.WORKLOAD_BOOT_FAILED
STARTED = EventType.REQUEST_STARTED
FINISHED = EventType.REQUEST_FINISHED


def at(seconds: str | int) -> int:
    """T0 + a decimal number of seconds, in microseconds."""
    return T0 + int(Decimal(seconds) * 1_000_000)


@dataclass
class Log:
    """An org's log in the making: each event gets the next sequence number."""

    events: list[LoggedEvent] = field(default_factory=list)

    def add(
        self,
        type: EventType,
        seconds: str | int,
        *,
        workload: str = "w1",
        kind: WorkloadKind = WorkloadKind.SERVING,
        instance_type: str = "A100",
        worker_type: WorkerType = WorkerType.FLEX,
        **fields: Any,
    ) -> int:
        seq = len(self.events) + 1
        if type is STOPPED:
            fields.setdefault("stop_reason", StopReason.SCALED_DOWN)
        event = UsageEvent(
            event_id=f"ev-{seq}",
            org_id="org-1",
            endpoint_id="ep-1",
            workload_id=workload,
            workload_kind=kind,
            instance_type=instance_type,
            worker_type=worker_type,
            type=type,
            occurred_at=at(seconds),
            **fields,
        )
        self.events.append((event, seq))
        return seq

    def heartbeat(self, seconds: str | int) -> int:
        """An org HEARTBEAT (R28) at T0 + seconds."""
        seq = len(self.events) + 1
        self.events.append((heartbeat(f"ev-{seq}", "org-1", at(seconds)), seq))
        return seq

    def rate(
        self, plans: PlanHistory = PER_MINUTE, prices: PriceHistory = PRICES, now: int | None = LATER
    ) -> OrgRating:
        return rate_org(self.events, prices, plans, as_of=now)


def session_of(
    seconds: str,
    *,
    plans: PlanHistory = PER_MINUTE,
    instance_type: str = "A100",
    worker_type: WorkerType = WorkerType.FLEX,
    kind: WorkloadKind = WorkloadKind.SERVING,
    stop_reason: StopReason = StopReason.SCALED_DOWN,
) -> Session:
    log = Log()
    common: dict[str, Any] = {"instance_type": instance_type, "worker_type": worker_type, "kind": kind}
    log.add(UP, 0, **common)
    log.add(STOPPED, seconds, stop_reason=stop_reason, **common)
    (session,) = log.rate(plans).sessions
    return session


# R1 ------------------------------------------------------------------------------------------------------------


def test_r1_informational_events_are_zero_lines_and_metering_starts_at_up() -> None:
    log = Log()
    log.add(EventType.WORKLOAD_SCHEDULED, 0)
    log.add(EventType.IMAGE_PULL_STARTED, 10)
    log.add(UP, 30)
    log.add(STOPPED, 90)
    rating = log.rate()
    (session,) = rating.sessions
    # 60 s from UP (30 s) to STOPPED (90 s): 1 minute x 60 x $0.00076 = $0.0456; the 30 s before UP are free.
    assert (session.up, session.stop, session.billed_units, session.amount) == (at(30), at(90), 1, Decimal("0.0456"))
    assert [(z.rule, z.seqs, z.event_type) for z in rating.zero_lines] == [
        ("R1", (1,), EventType.WORKLOAD_SCHEDULED),
        ("R1", (2,), EventType.IMAGE_PULL_STARTED),
    ]
    assert all(z.explanation.startswith("R1:") and z.amount == 0 for z in rating.zero_lines)
    assert rating.amount == Decimal("0.0456")


# R2, R3 --------------------------------------------------------------------------------------------------------


def test_r2_cold_start_is_billed_at_the_same_rate() -> None:
    log = Log()
    log.add(UP, 0)
    log.add(READY, 100)
    log.add(STOPPED, 100)
    (session,) = log.rate().sessions
    # 100 s -> 2 minutes -> 120 x $0.00076 = $0.0912; cold start 100 s = $0.076, rounding 20 s = $0.0152.
    assert (session.billed_units, session.amount) == (2, Decimal("0.0912"))
    assert "R2" in session.rules
    split = session.attribution
    assert split is not None
    assert (split.cold_start_micros, split.serving_micros, split.idle_micros, split.rounding_micros) == (
        100_000_000,
        0,
        0,
        20_000_000,
    )
    assert (split.cold_start_amount, split.rounding_amount) == (Decimal("0.076"), Decimal("0.0152"))


def test_r3_idle_warm_replica_is_billed() -> None:
    log = Log()
    log.add(UP, 0, instance_type="L4")
    log.add(READY, 10, instance_type="L4")
    log.add(STOPPED, 185, instance_type="L4")
    (session,) = log.rate().sessions
    # 185 s -> 4 minutes -> 240 x $0.00019 = $0.0456. Idle 175 s = $0.03325, cold 10 s = $0.0019,
    # rounding 55 s = $0.01045.
    assert (session.billed_units, session.amount) == (4, Decimal("0.0456"))
    assert {"R2", "R3"} <= set(session.rules)
    split = session.attribution
    assert split is not None
    assert (split.cold_start_micros, split.idle_micros, split.rounding_micros) == (10_000_000, 175_000_000, 55_000_000)
    assert (split.cold_start_amount, split.idle_amount, split.rounding_amount) == (
        Decimal("0.0019"),
        Decimal("0.03325"),
        Decimal("0.01045"),
    )


# R4 ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reason", [StopReason.SCALED_DOWN, StopReason.OOM, StopReason.CRASH, StopReason.COMPLETED, StopReason.CANCELLED]
)
def test_r4_session_ends_at_stopped_whatever_the_reason(reason: StopReason) -> None:
    session = session_of("61", worker_type=WorkerType.ACTIVE, stop_reason=reason)
    # 61 s -> 2 minutes -> 120 x $0.00060 (A100 active) = $0.072.
    assert (session.stop, session.stop_reason, session.billed_units, session.amount) == (
        at(61),
        reason,
        2,
        Decimal("0.072"),
    )
    assert session.rules == ("R1", "R2", "R4", "R10", "R11")
    assert session.stop_seq == 2 and session.entry_seqs == (1, 2)


# R5 ------------------------------------------------------------------------------------------------------------


def test_r5_boot_failure_after_up_is_billed_to_the_failure_like_a_crash() -> None:
    log = Log()
    log.add(UP, 0)
    log.add(BOOT_FAILED, 75)
    rating = log.rate()
    (session,) = rating.sessions
    # 75 s -> 2 minutes -> 120 x $0.00076 = $0.0912.
    assert (session.stop, session.stop_reason, session.billed_units, session.amount) == (
        at(75),
        StopReason.CRASH,
        2,
        Decimal("0.0912"),
    )
    assert (session.boot_failed_seq, session.stop_seq) == (2, None)
    assert {"R4", "R5"} <= set(session.rules)
    assert "R5" in session.explanation
    assert rating.anomalies == () and rating.zero_lines == ()


def test_r5_boot_failure_without_up_is_a_zero_line() -> None:
    log = Log()
    log.add(EventType.WORKLOAD_SCHEDULED, 0)
    log.add(BOOT_FAILED, 40)
    rating = log.rate()
    assert rating.sessions == () and rating.anomalies == ()
    assert [(z.rule, z.seqs) for z in rating.zero_lines] == [("R1", (1,)), ("R5", (2,))]
    assert rating.zero_lines[1].explanation.startswith("R5:")
    assert rating.amount == 0


# R6, R7 --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", [StopReason.BUILD_SUCCEEDED, StopReason.BUILD_FAILED])
def test_r6_build_is_billed_up_to_stopped_whether_it_succeeds_or_fails(reason: StopReason) -> None:
    session = session_of("150", instance_type="L4", kind=WorkloadKind.BUILD, stop_reason=reason)
    # 150 s -> 3 minutes -> 180 x $0.00019 = $0.0342.
    assert (session.workload_kind, session.billed_units, session.amount) == (WorkloadKind.BUILD, 3, Decimal("0.0342"))
    assert "R6" in session.rules and "R6" in session.explanation
    assert session.attribution is None  # R25 splits serving sessions only


def test_r6_build_on_a_cpu_builder_added_by_a_price_book_update() -> None:
    book = default_price_book()
    rates = {**book.rates, "CPU builder": InstanceRate(Decimal("0.00002"), Decimal("0.00001"))}
    prices = PriceHistory([book, PriceBook(0, rates, version=3)])
    log = Log()
    log.add(UP, 0, kind=WorkloadKind.BUILD, instance_type="CPU builder")
    log.add(STOPPED, 30, kind=WorkloadKind.BUILD, instance_type="CPU builder", stop_reason=StopReason.BUILD_FAILED)
    (session,) = log.rate(prices=prices).sessions
    # 30 s -> 1 minute -> 60 x $0.00002 = $0.0012, under price book v3.
    assert (session.billed_units, session.amount, session.runs[0].price_version) == (1, Decimal("0.0012"), 3)


@pytest.mark.parametrize(
    ("seconds", "reason", "units", "amount"),
    [
        # 3600 s -> 60 minutes -> 3600 x $0.00093 (H100 PRO active) = $3.348.
        ("3600", StopReason.COMPLETED, 60, "3.348"),
        # 3600.5 s -> 61 minutes -> 3660 x $0.00093 = $3.4038.
        ("3600.5", StopReason.CANCELLED, 61, "3.4038"),
    ],
)
def test_r7_training_is_billed_wall_clock(seconds: str, reason: StopReason, units: int, amount: str) -> None:
    session = session_of(
        seconds, instance_type="H100 PRO", worker_type=WorkerType.ACTIVE, kind=WorkloadKind.TRAINING, stop_reason=reason
    )
    assert (session.billed_units, session.amount) == (units, Decimal(amount))
    assert "R7" in session.rules and session.attribution is None


# R8, R9 --------------------------------------------------------------------------------------------------------


def test_r8_development_deployment_is_a_zero_line() -> None:
    log = Log()
    log.add(UP, 0, development=True)
    log.add(READY, 20, development=True)
    log.add(STOPPED, 600, development=True)
    log.add(
        EventType.STORAGE_SAMPLE,
        300,
        development=True,
        storage_kind=StorageKind.CONTAINER_DISK,
        gigabytes=Decimal(50),
        interval_seconds=300,
    )
    rating = log.rate()
    assert rating.sessions == ()
    (line,) = rating.zero_lines
    assert (line.rule, line.seqs, line.start, line.end, line.amount) == ("R8", (1, 2, 3), at(0), at(600), Decimal(0))
    assert line.explanation.startswith("R8:")
    (storage,) = rating.storage
    assert (storage.rule, storage.amount, storage.exact_amount) == ("R8", Decimal(0), Fraction(0))
    assert rating.amount == 0


def test_r9_scaled_to_zero_has_no_session_and_no_charge() -> None:
    empty = rate_org([], PRICES, PER_MINUTE, as_of=LATER)
    assert (empty.sessions, empty.zero_lines, empty.storage, empty.anomalies) == ((), (), (), ())
    assert empty.amount == 0
    log = Log()
    log.add(EventType.WORKLOAD_SCHEDULED, 0)  # scheduled, never observed up
    rating = log.rate()
    assert rating.sessions == () and rating.amount == 0


# R10 -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plans", "seconds", "units", "amount"),
    [
        (PER_MINUTE, "60", 1, "0.0456"),  # exactly 60 s: 1 minute, 60 x $0.00076
        (PER_MINUTE, "60.000001", 2, "0.0912"),  # 1 µs over: 2 minutes, 120 x $0.00076
        (PER_MINUTE, "0", 0, "0"),  # d = 0 bills nothing
        (PER_MINUTE, "0.000001", 1, "0.0456"),  # any d > 0 bills at least one unit
        (PER_MINUTE, "125.3", 3, "0.1368"),  # 180 x $0.00076
        (PER_SECOND, "10.2", 11, "0.00836"),  # 11 x $0.00076
        (PER_SECOND, "10", 10, "0.0076"),
        (PER_SECOND, "0", 0, "0"),
    ],
)
def test_r10_partial_unit_rounds_up(plans: PlanHistory, seconds: str, units: int, amount: str) -> None:
    session = session_of(seconds, plans=plans)
    assert (session.billed_units, session.amount) == (units, Decimal(amount))
    assert session.runs == () if units == 0 else sum(run.count for run in session.runs) == units


def test_r10_partial_minute_rounds_up_and_says_so() -> None:
    session = session_of("125.3")
    assert (session.granularity, session.unit_seconds, session.plan_version) == (Granularity.PER_MINUTE, 60, None)
    assert "R10: 125.3 s billed as 3 minutes (partial minute rounded up)" in session.explanation
    assert (
        "R10: 10.2 s billed as 11 seconds (partial second rounded up)"
        in session_of("10.2", plans=PER_SECOND).explanation
    )


def test_r10_plan_in_force_at_up_sets_granularity() -> None:
    plans = PlanHistory([Plan(effective_from=at(30), granularity=Granularity.PER_SECOND, version=9)])
    log = Log()
    log.add(UP, 0, workload="before")
    log.add(STOPPED, "10.2", workload="before")
    log.add(UP, 40, workload="after")
    log.add(STOPPED, "50.2", workload="after")
    before, after = log.rate(plans).sessions
    # Before the plan: 10.2 s -> 1 minute ($0.0456); after it: 10.2 s -> 11 seconds ($0.00836).
    assert (before.granularity, before.billed_units, before.amount) == (Granularity.PER_MINUTE, 1, Decimal("0.0456"))
    assert (after.granularity, after.billed_units, after.amount, after.plan_version) == (
        Granularity.PER_SECOND,
        11,
        Decimal("0.00836"),
        9,
    )


def test_r10_unit_belongs_whole_to_the_window_containing_its_start() -> None:
    log = Log()
    log.add(UP, -30)  # 08:59:30
    log.add(STOPPED, 60)  # 09:01:00: 90 s -> 2 minutes, starting 08:59:30 and 09:00:30
    log.add(UP, 3570, workload="w2")  # 09:59:30
    log.add(STOPPED, 3600, workload="w2")  # 10:00:00: 30 s -> 1 minute, in the 09:00 hour only
    rating = log.rate()
    hours = bucket_usage(rating.sessions, rating.storage, T0 - HOUR, T0 + 2 * HOUR, BucketSize.HOUR)
    assert [(h.start, h.units, h.compute_amount) for h in hours] == [
        (T0 - HOUR, 1, Decimal("0.0456")),
        (T0, 2, Decimal("0.0912")),
        (T0 + HOUR, 0, Decimal("0")),
    ]
    w1 = rating.sessions[0]
    assert (w1.usage_in(at(-30), at(30)).units, w1.usage_in(at(30), at(31)).units) == (1, 1)
    assert w1.usage_in(at("-29.999999"), at(30)).units == 0  # the first unit started before this window
    day = bucket_usage(rating.sessions, rating.storage, T0 - 2 * HOUR, T0 + 2 * HOUR, BucketSize.DAY)
    assert [(d.units, d.amount) for d in day] == [(3, Decimal("0.1368"))]


@pytest.mark.parametrize(
    ("evidence", "units", "amount"),
    [
        ("150", 3, "0.1368"),  # units starting at 0, 60 and 120 s started before the evidence: 180 x $0.00076
        ("120", 2, "0.0912"),  # the unit starting exactly at the evidence instant has not started before it
        ("120.000001", 3, "0.1368"),
        ("0", 0, "0"),
    ],
)
def test_r10_r28_open_session_accrues_units_started_before_its_heartbeat_evidence(
    evidence: str, units: int, amount: str
) -> None:
    log = Log()
    log.add(UP, 0)
    log.heartbeat(evidence)
    (session,) = log.rate(now=None).sessions
    assert (session.is_open, session.as_of, session.billed_units, session.amount) == (
        True,
        at(evidence),
        units,
        Decimal(amount),
    )
    assert "still open" in session.explanation and "R28" in session.explanation and "R4" not in session.rules


def test_r10_r28_open_session_never_accrues_to_the_wall_clock() -> None:
    # UP at 0 and nothing after it: the log proves 0 s of running however late the rating is read (1,000 h on).
    log = Log()
    log.add(UP, 0)
    (session,) = log.rate(now=LATER).sessions
    assert (session.billed_units, session.amount, session.as_of) == (0, Decimal(0), at(0))


def test_r28_the_workloads_own_latest_event_is_evidence() -> None:
    # A request started at 90 s shows w1 running at 90 s: units at 0 and 60 s = 2 x $0.0456 = $0.0912. An earlier
    # HEARTBEAT (30 s) adds nothing; a storage sample of another workload is not w1's evidence.
    log = Log()
    log.add(UP, 0)
    log.add(STARTED, 90, request_id="r1")
    log.heartbeat(30)
    log.add(UP, 0, workload="w2")
    log.add(
        EventType.STORAGE_SAMPLE,
        400,
        workload="w2",
        storage_kind=StorageKind.CONTAINER_DISK,
        gigabytes=Decimal(10),
        interval_seconds=300,
    )
    rating = log.rate(now=None)
    w1, w2 = (rating.workload(w).session for w in ("w1", "w2"))
    assert w1 is not None and w2 is not None
    assert (w1.billed_units, w1.amount) == (2, Decimal("0.0912"))
    # w2's own sample at 400 s: units at 0..360 s = 7 x $0.0456 = $0.3192.
    assert (w2.billed_units, w2.amount) == (7, Decimal("0.3192"))
    assert (rating.latest_event_at, rating.heartbeat_at) == (at(400), at(30))


def test_r28_an_as_of_cut_bounds_the_evidence() -> None:
    # A HEARTBEAT at 300 s, read as of 100 s: units at 0 and 60 s only.
    log = Log()
    log.add(UP, 0)
    log.heartbeat(300)
    (session,) = log.rate(now=at(100)).sessions
    assert session.billed_units == 2


# R11 -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instance_type", "worker_type", "seconds", "amount"),
    [
        ("A100", WorkerType.FLEX, "120", "0.0912"),  # 2 x 60 x $0.00076
        ("A100", WorkerType.ACTIVE, "120", "0.072"),  # 2 x 60 x $0.00060
        ("B200", WorkerType.FLEX, "60", "0.144"),  # 60 x $0.00240
        ("RTX 4000", WorkerType.ACTIVE, "60", "0.0066"),  # 60 x $0.00011
    ],
)
def test_r11_flex_and_active_rates(instance_type: str, worker_type: WorkerType, seconds: str, amount: str) -> None:
    session = session_of(seconds, instance_type=instance_type, worker_type=worker_type)
    assert session.amount == Decimal(amount)
    assert session.runs[0].worker_type is worker_type


def test_r11_a_flex_minute_is_60_times_the_per_second_rate() -> None:
    session = session_of("120")
    (run,) = session.runs
    assert (run.rate_per_second, run.unit_price, run.amount) == (
        Decimal("0.00076"),
        Decimal("0.0456"),
        Decimal("0.0912"),
    )
    assert "R11: FLEX rate $0.00076/s, $0.0456 per unit, $0.0912 in all" in run.explanation
    assert "R11: A100 FLEX at $0.00076/s = $0.0456 per minute (price book v0)" in session.explanation


def test_r11_type_without_a_rate_in_the_book_in_force_is_an_error() -> None:
    later = PriceBook(at(3600), {**default_price_book().rates, "X1": InstanceRate(Decimal(1), Decimal(1))}, version=4)
    log = Log()
    log.add(UP, 0, instance_type="X1")
    log.add(STOPPED, 60, instance_type="X1")
    with pytest.raises(NotFound, match="R11"):
        log.rate(prices=PriceHistory([default_price_book(), later]))


# R12 -----------------------------------------------------------------------------------------------------------


def _price_change(at_seconds: str, active: str) -> PriceHistory:
    rates = {**default_price_book().rates, "A100": InstanceRate(Decimal("0.00070"), Decimal(active))}
    return PriceHistory([default_price_book(), PriceBook(at(at_seconds), rates, version=5)])


def test_r12_price_change_in_the_middle_of_a_long_active_session() -> None:
    log = Log()
    log.add(UP, 0, worker_type=WorkerType.ACTIVE)
    log.add(STOPPED, 7200, worker_type=WorkerType.ACTIVE)
    (session,) = log.rate(prices=_price_change("1830", "0.00050")).sessions
    # 120 minutes. Units 0..30 start at 0..1800 s, before the change at 1830 s: 31 x 60 x $0.00060 = $1.116.
    # Units 31..119 start at 1860..7140 s: 89 x 60 x $0.00050 = $2.67. Total $3.786.
    assert [(r.first_unit_index, r.count, r.first_unit_start, r.price_version, r.amount) for r in session.runs] == [
        (0, 31, at(0), 0, Decimal("1.116")),
        (31, 89, at(1860), 5, Decimal("2.67")),
    ]
    assert (session.billed_units, session.amount) == (120, Decimal("3.786"))
    assert "R12" in session.rules and "R12" in session.explanation


def test_r12_unit_starting_at_the_change_uses_the_new_price() -> None:
    log = Log()
    log.add(UP, 0, worker_type=WorkerType.ACTIVE)
    log.add(STOPPED, 7200, worker_type=WorkerType.ACTIVE)
    (session,) = log.rate(prices=_price_change("3600", "0.00050")).sessions
    # Units 0..59 at $0.036 = $2.16; unit 60 starts at 3600 s, when v5 is in force: 60 x $0.03 = $1.80.
    assert [(r.count, r.amount) for r in session.runs] == [(60, Decimal("2.16")), (60, Decimal("1.8"))]
    assert session.amount == Decimal("3.96")
    # Invoices and usage queries see the split by unit start: the 09:00 hour holds v0's units only.
    assert session.usage_in(T0, T0 + HOUR).compute_amount == Decimal("2.16")
    assert [r.price_version for r in session.runs_in(T0 + HOUR, T0 + 2 * HOUR)] == [5]


def test_r12_long_per_second_session_is_a_few_runs() -> None:
    log = Log()
    log.add(UP, 0, worker_type=WorkerType.ACTIVE)
    log.add(STOPPED, 30 * 86400, worker_type=WorkerType.ACTIVE)
    (session,) = log.rate(PER_SECOND).sessions
    # 30 days = 2,592,000 seconds x $0.00060 = $1,555.20, as one run.
    assert (session.billed_units, len(session.runs), session.amount) == (2_592_000, 1, Decimal("1555.2"))


# R13, R14 ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "gigabytes", "interval", "exact", "decimal"),
    [
        # R13: 50 x 0.10 x 300 / 2,592,000 = 1500 / 2,592,000 = 1/1728.
        (
            StorageKind.CONTAINER_DISK,
            "50",
            300,
            Fraction(1, 1728),
            "0.00057870370370370370370370370370370370370370370370370",
        ),
        # R13: 12.5 x 0.10 x 600 / 2,592,000 = 750 / 2,592,000 = 1/3456.
        (
            StorageKind.CONTAINER_DISK,
            "12.5",
            600,
            Fraction(1, 3456),
            "0.00028935185185185185185185185185185185185185185185185",
        ),
        # R14: (1000 x 0.07 + 500 x 0.05) x 300 / 2,592,000 = 95 x 300 / 2,592,000 = 19/1728.
        (
            StorageKind.NETWORK_VOLUME,
            "1500",
            300,
            Fraction(19, 1728),
            "0.010995370370370370370370370370370370370370370370370",
        ),
        # R14: 1000 x 0.07 x 300 / 2,592,000 = 21,000 / 2,592,000 = 7/864.
        (
            StorageKind.NETWORK_VOLUME,
            "1000",
            300,
            Fraction(7, 864),
            "0.0081018518518518518518518518518518518518518518518519",
        ),
        # R14: 800 x 0.07 x 300 / 2,592,000 = 16,800 / 2,592,000 = 7/1080.
        (
            StorageKind.NETWORK_VOLUME,
            "800",
            300,
            Fraction(7, 1080),
            "0.0064814814814814814814814814814814814814814814814815",
        ),
        # R13: 2,592,000 s is one month: 30 GB x $0.10 = $3 exactly.
        (StorageKind.CONTAINER_DISK, "30", 2_592_000, Fraction(3), "3"),
    ],
)
def test_r13_r14_storage_sample_charges(
    kind: StorageKind, gigabytes: str, interval: int, exact: Fraction, decimal: str
) -> None:
    log = Log()
    log.add(
        EventType.STORAGE_SAMPLE,
        interval + 5,
        storage_kind=kind,
        gigabytes=Decimal(gigabytes),
        interval_seconds=interval,
        volume_id="vol-1" if kind is StorageKind.NETWORK_VOLUME else None,
    )
    (charge,) = log.rate().storage
    assert (charge.exact_amount, charge.amount) == (exact, Decimal(decimal))
    assert (charge.start, charge.end, charge.seq) == (at(5), at(interval + 5), 1)
    assert charge.rule == ("R13" if kind is StorageKind.CONTAINER_DISK else "R14")
    assert charge.explanation.startswith(charge.rule)


def test_r13_storage_interval_defaults_to_300_s_and_counts_in_the_window_of_its_start() -> None:
    log = Log()
    log.add(EventType.STORAGE_SAMPLE, 120, storage_kind=StorageKind.CONTAINER_DISK, gigabytes=Decimal(50))
    rating = log.rate()
    (charge,) = rating.storage
    assert (charge.interval_seconds, charge.start, charge.exact_amount) == (300, at(-180), Fraction(1, 1728))
    # The interval starts at 08:57, so it belongs to the 08:00 hour, not to 09:00 where it ends.
    assert usage_in_window(rating.sessions, rating.storage, T0, T0 + HOUR).storage_amount == 0
    assert usage_in_window(rating.sessions, rating.storage, T0 - HOUR, T0).storage_amount == charge.amount


# R25 -----------------------------------------------------------------------------------------------------------


def test_r25_split_with_oom_kill_mid_request_and_two_overlapping_requests() -> None:
    log = Log()
    log.add(UP, 0)
    log.add(READY, 20)
    log.add(STARTED, 30, request_id="a")
    log.add(STARTED, 40, request_id="b")
    log.add(FINISHED, 50, request_id="a")
    log.add(STOPPED, 70, stop_reason=StopReason.OOM)  # b is killed mid-request
    log.add(FINISHED, 75, request_id="b")  # reported after the kill: R26, b is in flight until the stop
    rating = log.rate()
    (session,) = rating.sessions
    split = session.attribution
    assert split is not None
    # 70 s -> 2 minutes = 120 s = $0.0912 at $0.00076/s.
    # cold start 0-20 s = 20 s ($0.0152); idle 20-30 s = 10 s ($0.0076); serving 30-70 s = 40 s ($0.0304);
    # rounding 70-120 s = 50 s ($0.038). 20 + 10 + 40 + 50 = 120; 0.0152 + 0.0076 + 0.0304 + 0.038 = 0.0912.
    assert (split.cold_start_micros, split.serving_micros, split.idle_micros, split.rounding_micros) == (
        20_000_000,
        40_000_000,
        10_000_000,
        50_000_000,
    )
    assert (split.cold_start_amount, split.serving_amount, split.idle_amount, split.rounding_amount) == (
        Decimal("0.0152"),
        Decimal("0.0304"),
        Decimal("0.0076"),
        Decimal("0.038"),
    )
    # a: 30-40 s alone (10 s) + 40-50 s shared with b (5 s) = 15 s = $0.0114.
    # b: 40-50 s shared (5 s) + 50-70 s alone (20 s) = 25 s = $0.019, in flight until the OOM stop.
    a, b = split.requests
    assert (a.request_id, a.attributed_micros, a.attributed_amount, a.finished_seq) == (
        "a",
        Fraction(15_000_000),
        Fraction("0.0114"),
        5,
    )
    assert (b.request_id, b.attributed_micros, b.attributed_amount, b.finished_seq, b.in_flight_to) == (
        "b",
        Fraction(25_000_000),
        Fraction("0.019"),
        None,
        at(70),
    )
    assert [anomaly.seq for anomaly in rating.anomalies] == [7]
    assert split.explanation.startswith("R25:") and a.explanation.startswith("R25:")


def test_r25_three_requests_in_flight_share_each_instant_equally() -> None:
    log = Log()
    log.add(UP, 0)
    log.add(READY, 0)
    for request_id in "abc":
        log.add(STARTED, 10, request_id=request_id)
    for request_id in "abc":
        log.add(FINISHED, 20, request_id=request_id)
    log.add(STOPPED, 20)
    (session,) = log.rate().sessions
    split = session.attribution
    assert split is not None
    # 20 s -> 1 minute ($0.0456): cold 0, idle 0-10 s, serving 10-20 s ($0.0076), rounding 40 s ($0.0304).
    assert (split.cold_start_micros, split.idle_micros, split.serving_micros, split.rounding_micros) == (
        0,
        10_000_000,
        10_000_000,
        40_000_000,
    )
    # Each request: 10 s / 3 and $0.0076 / 3 = 76/30000 = 19/7500.
    assert [(r.attributed_micros, r.attributed_amount) for r in split.requests] == [
        (Fraction(10_000_000, 3), Fraction(19, 7500))
    ] * 3


def test_r25_money_follows_r12_price_changes() -> None:
    rates = {**default_price_book().rates, "A100": InstanceRate(Decimal("0.001"), Decimal("0.0009"))}
    prices = PriceHistory([default_price_book(), PriceBook(at(10), rates, version=2)])
    log = Log()
    log.add(UP, 0)
    log.add(READY, 5)
    log.add(STARTED, 5, request_id="r")
    log.add(FINISHED, 15, request_id="r")
    log.add(STOPPED, "15.5")
    (session,) = log.rate(PER_SECOND, prices).sessions
    # 15.5 s -> 16 seconds: units 0-9 at $0.00076 ($0.0076) and 10-15 at $0.001 ($0.006): $0.0136.
    # cold 0-5 s = $0.0038; serving 5-10 s at v0 ($0.0038) + 10-15 s at v2 ($0.005) = $0.0088;
    # idle 15-15.5 s = $0.0005; rounding 15.5-16 s = $0.0005.
    assert session.amount == Decimal("0.0136")
    split = session.attribution
    assert split is not None
    assert (split.cold_start_amount, split.serving_amount, split.idle_amount, split.rounding_amount) == (
        Decimal("0.0038"),
        Decimal("0.0088"),
        Decimal("0.0005"),
        Decimal("0.0005"),
    )
    assert split.requests[0].attributed_amount == Fraction("0.0088")


def test_r25_open_session_has_no_rounding() -> None:
    log = Log()
    log.add(UP, 0)
    log.add(READY, 30)
    log.add(STARTED, 40, request_id="r")
    log.heartbeat(90)  # R28: the log proves the session running at 90 s
    (session,) = log.rate(now=None).sessions
    split = session.attribution
    assert split is not None
    # 90 s proven: 2 minutes started (120 s). The running unit is attributed as things stand:
    # cold 0-30 s, idle 30-40 s, serving 40-120 s (r has not finished), rounding none.
    assert (split.cold_start_micros, split.idle_micros, split.serving_micros, split.rounding_micros) == (
        30_000_000,
        10_000_000,
        80_000_000,
        0,
    )
    assert split.rounding_amount == 0 and split.serving_amount == Decimal("0.0608")  # 80 x $0.00076


# R26 -----------------------------------------------------------------------------------------------------------


def _second_up(log: Log) -> None:
    log.add(UP, 0)
    log.add(UP, 10)
    log.add(STOPPED, 70)


def _stopped_without_up(log: Log) -> None:
    log.add(STOPPED, 10)


def _stopped_before_up(log: Log) -> None:
    log.add(STOPPED, 0)
    log.add(UP, 10)
    log.add(STOPPED, 70)


def _second_stopped(log: Log) -> None:
    log.add(UP, 0)
    log.add(STOPPED, 60)
    log.add(STOPPED, 90)


def _request_on_unknown_workload(log: Log) -> None:
    log.add(STARTED, 10, workload="nobody", request_id="r")


def _request_after_stop(log: Log) -> None:
    log.add(UP, 0)
    log.add(STOPPED, 60)
    log.add(STARTED, "60.000001", request_id="r")


def _ready_before_up(log: Log) -> None:
    log.add(READY, 0)
    log.add(UP, 5)
    log.add(STOPPED, 65)


def _boot_failed_before_a_later_up(log: Log) -> None:
    log.add(BOOT_FAILED, 0)
    log.add(UP, 5)
    log.add(STOPPED, 65)


def _request_on_a_build(log: Log) -> None:
    log.add(UP, 0, kind=WorkloadKind.BUILD)
    log.add(STARTED, 10, kind=WorkloadKind.BUILD, request_id="r")
    log.add(STOPPED, 60, kind=WorkloadKind.BUILD, stop_reason=StopReason.BUILD_SUCCEEDED)


@pytest.mark.parametrize(
    ("scenario", "anomaly_seqs", "reason", "units"),
    [
        (_second_up, [2], "a second WORKLOAD_UP", 2),  # session 0-70 s: 2 minutes
        (_stopped_without_up, [1], "WORKLOAD_STOPPED before any WORKLOAD_UP", 0),
        (_stopped_before_up, [1], "WORKLOAD_STOPPED before any WORKLOAD_UP", 1),  # session 10-70 s
        (_second_stopped, [3], "after the session already ended", 1),  # session 0-60 s
        (_request_on_unknown_workload, [1], "not up", 0),
        (_request_after_stop, [3], "after the workload stopped", 1),
        (_ready_before_up, [1], "WORKLOAD_READY before any WORKLOAD_UP", 1),  # session 5-65 s
        (_boot_failed_before_a_later_up, [1], "WORKLOAD_BOOT_FAILED before any WORKLOAD_UP", 1),
        (_request_on_a_build, [2], "on a BUILD workload", 1),
    ],
)
def test_r26_anomalies_are_listed_and_charged_nothing(
    scenario: Any, anomaly_seqs: list[int], reason: str, units: int
) -> None:
    log = Log()
    scenario(log)
    rating = log.rate()
    assert [a.seq for a in rating.anomalies] == anomaly_seqs
    for anomaly in rating.anomalies:
        assert anomaly.rule == "R26" and anomaly.reason.startswith(f"R26: entry #{anomaly.seq} ")
        assert reason in anomaly.reason
    # Charged nothing: the only money is the well-formed session's, 60 x $0.00076 per minute.
    assert sum(s.billed_units for s in rating.sessions) == units
    assert rating.amount == Decimal("0.0456") * units
    assert rating.zero_lines == ()


# Inputs: arrival order, duplicates, conflicts, incremental re-rating --------------------------------------------


def test_r24_duplicate_delivery_counts_once_and_a_conflicting_duplicate_is_rejected() -> None:
    log = Log()
    log.add(UP, 0)
    log.add(STOPPED, 61)
    doubled = [*log.events, *reversed(log.events)]
    assert rate_org(doubled, PRICES, PER_MINUTE, as_of=LATER) == log.rate()
    original, _ = log.events[1]
    conflicting = dataclasses.replace(original, occurred_at=original.occurred_at + 1)
    with pytest.raises(EventConflict):
        rate_org([*log.events, (conflicting, 9)], PRICES, PER_MINUTE, as_of=LATER)


def test_rate_workload_re_rates_only_the_workload_a_new_event_touched() -> None:
    log = Log()
    log.add(UP, 0)
    log.add(UP, 0, workload="w2")
    log.add(STOPPED, 60, workload="w2")
    before = log.rate()
    log.add(STOPPED, 61)  # touches w1 only
    w1 = rate_workload([e for e in log.events if e[0].workload_id == "w1"], PRICES, PER_MINUTE, as_of=LATER)
    # w1 was open at LATER (1000 h -> 60,000 minutes); now it is 61 s -> 2 minutes = $0.0912.
    assert (w1.session is not None) and (w1.session.billed_units, w1.session.amount) == (2, Decimal("0.0912"))
    # The org's latest event time (R28) is the org's, not one workload's: the new STOPPED at 61 s moved it.
    assert dataclasses.replace(before.with_workload(w1), latest_event_at=at(61)) == log.rate()
    with pytest.raises(InvalidInput):
        rate_workload(log.events, PRICES, PER_MINUTE, as_of=LATER)
