"""Dispute reconstruction (R27) on a real store: the lifecycle table of 000_3db7cedd6114a431.txt as one ticket, a
replica killed mid-request, lookups by request ID alone, by approximate time and across invoices (R22), and
adjustments (R23).

Every unit count and amount is worked out by hand in a comment and written as a literal. Rates (R11, default book):
A100 FLEX $0.00076/s ($0.0456/min), A100 ACTIVE $0.00060/s ($0.036/min), A4000 FLEX $0.00016/s ($0.0096/min).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from ledger.billing import BillingEngine
from ledger.dispute import (
    DisputeQuery,
    InvoiceCoverage,
    InvoicedRange,
    Reconstruction,
    SessionCharge,
    Verdict,
    ZeroCharge,
    reconstruct,
    reconstruct_charges,
)
from ledger.errors import InvalidInput, NotFound
from ledger.events import EventType, StopReason
from ledger.intake import Ledger
from ledger.log.entry import EntryRef
from ledger.rating import Session, StorageCharge
from ledger.timeutil import parse_rfc3339_micros
from storage.sql import SqlStore
from tests.conftest import FixedClock

SECOND = 1_000_000
DAY = "2026-10-05T"


def at(clock: str) -> int:
    return parse_rfc3339_micros(f"{DAY}{clock}Z")


class Events:
    """Usage events of org acme as billing-rules.md spells them, numbered in the order they are written."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, type: str, clock: str, workload: str, **fields: Any) -> None:
        event: dict[str, Any] = {
            "event_id": f"ev-{len(self.items):04d}",
            "org_id": "acme",
            "endpoint_id": "ep-chat",
            "workload_id": workload,
            "workload_kind": "SERVING",
            "instance_type": "A100",
            "type": type,
            "occurred_at": f"{DAY}{clock}Z",
        }
        event.update(fields)
        self.items.append(event)

    def lifecycle(self, workload: str, *steps: tuple[str, str], **fields: Any) -> None:
        for type, clock in steps:
            extra = {"stop_reason": "SCALED_DOWN"} if type == "WORKLOAD_STOPPED" else {}
            self.add(type, clock, workload, **{**extra, **fields})


def lifecycle_day() -> Events:
    """Every row of the lifecycle table of 000_3db7cedd6114a431.txt on endpoint ep-chat, 10:00-11:00 UTC."""
    e = Events()
    # Idle warm replica (min_replica >= 1), ACTIVE, up since 08:00 and scaled down at 10:40 when min_replica -> 0.
    warm = {"worker_type": "ACTIVE"}
    e.add("WORKLOAD_UP", "08:00:00", "wl-warm", **warm)
    e.add("WORKLOAD_READY", "08:00:00", "wl-warm", **warm)
    # R14: 1200 GB for 324 s ending 10:05:00 (09:59:36-10:05:00).
    volume = {"storage_kind": "NETWORK_VOLUME", "volume_id": "vol-models", "gigabytes": "1200", "interval_seconds": 324}
    e.add("STORAGE_SAMPLE", "10:05:00", "wl-warm", **warm, **volume)
    e.add("WORKLOAD_STOPPED", "10:40:00", "wl-warm", stop_reason="SCALED_DOWN", **warm)
    # Image build after truss push: a BUILD workload on a CPU-less A4000 builder.
    build = {"workload_kind": "BUILD", "instance_type": "A4000"}
    e.add("WORKLOAD_SCHEDULED", "10:00:00", "wl-build", **build)
    e.add("WORKLOAD_UP", "10:00:10", "wl-build", **build)
    e.add("WORKLOAD_STOPPED", "10:03:40", "wl-build", stop_reason="BUILD_SUCCEEDED", **build)
    # A replica: image pull, cold start, two requests, idle, terminated by autoscaling.
    e.add("WORKLOAD_SCHEDULED", "10:05:00", "wl-a")
    e.add("IMAGE_PULL_STARTED", "10:05:02", "wl-a")
    e.add("WORKLOAD_UP", "10:05:30", "wl-a")
    e.add("WORKLOAD_READY", "10:06:15", "wl-a")
    e.add("REQUEST_STARTED", "10:06:20", "wl-a", request_id="req-1")
    e.add("REQUEST_FINISHED", "10:06:50", "wl-a", request_id="req-1")
    e.add("REQUEST_STARTED", "10:07:00", "wl-a", request_id="req-2")
    e.add("REQUEST_FINISHED", "10:07:30", "wl-a", request_id="req-2")
    disk = {"storage_kind": "CONTAINER_DISK", "gigabytes": "30", "interval_seconds": 270}
    e.add("STORAGE_SAMPLE", "10:09:00", "wl-a", **disk)
    e.add("WORKLOAD_STOPPED", "10:09:00", "wl-a", stop_reason="SCALED_DOWN")
    e.add("REQUEST_STARTED", "10:09:30", "wl-a", request_id="req-stray")  # R26: after the stop
    # A replica killed by OOM mid-request.
    e.add("WORKLOAD_SCHEDULED", "10:10:00", "wl-oom")
    e.add("IMAGE_PULL_STARTED", "10:10:05", "wl-oom")
    e.add("WORKLOAD_UP", "10:10:30", "wl-oom")
    e.add("WORKLOAD_READY", "10:11:00", "wl-oom")
    e.add("REQUEST_STARTED", "10:11:10", "wl-oom", request_id="req-3")
    e.add("REQUEST_FINISHED", "10:11:40", "wl-oom", request_id="req-3")
    e.add("REQUEST_STARTED", "10:12:00", "wl-oom", request_id="req-4")
    e.add("WORKLOAD_STOPPED", "10:12:20.500000", "wl-oom", stop_reason="OOM")
    # A failed boot: never observed up.
    e.add("WORKLOAD_SCHEDULED", "10:15:00", "wl-boot")
    e.add("IMAGE_PULL_STARTED", "10:15:03", "wl-boot")
    e.add("WORKLOAD_BOOT_FAILED", "10:17:00", "wl-boot")
    # A development deployment (truss push --watch) reporting on the same endpoint ID.
    dev = {"development": True, "instance_type": "L4"}
    e.add("WORKLOAD_UP", "10:20:00", "wl-dev", **dev)
    e.add("WORKLOAD_READY", "10:20:30", "wl-dev", **dev)
    e.add("REQUEST_STARTED", "10:21:00", "wl-dev", request_id="req-dev", **dev)
    e.add("REQUEST_FINISHED", "10:21:10", "wl-dev", request_id="req-dev", **dev)
    e.add("WORKLOAD_STOPPED", "10:25:00", "wl-dev", stop_reason="SCALED_DOWN", **dev)
    # From 10:40 no workload of ep-chat is up: scaled to zero.
    return e


@pytest.fixture
def sqlite_ledger(sqlite_url: str, clock: FixedClock) -> Iterator[Ledger]:
    """For tests of the reconstruction's logic; the store's queries are covered on both backends by `ledger`."""
    store = SqlStore(sqlite_url, clock=clock)
    yield Ledger(store, clock=clock)
    store.close()


def load(ledger: Ledger, events: Events) -> None:
    ledger.append_events(events.items)


def session(result: Reconstruction, workload: str) -> SessionCharge:
    (found,) = [s for s in result.sessions if s.session.workload_id == workload]
    return found


def zero(result: Reconstruction, rule: str, workload: str | None = None) -> list[ZeroCharge]:
    return [z for z in result.zero_lines if z.rule == rule and (workload is None or z.workload_id == workload)]


def parts(charge: SessionCharge) -> dict[str, tuple[int, Decimal, tuple[str, ...]]]:
    return {p.name: (p.micros, p.amount, p.rules) for p in charge.parts}


def test_r27_every_row_of_the_lifecycle_table_in_one_reconstruction(ledger: Ledger) -> None:
    load(ledger, lifecycle_day())
    result = reconstruct_charges(ledger, DisputeQuery(endpoint_id="ep-chat", start=at("10:00:00"), end=at("11:00:00")))
    assert (result.org_id, result.endpoint_id) == ("acme", "ep-chat")  # the org found from the endpoint
    assert [s.session.workload_id for s in result.sessions] == ["wl-warm", "wl-build", "wl-a", "wl-oom"]

    # "Image build after truss push: Yes". R6: UP 10:00:10 to STOPPED 10:03:40 = 210 s -> 4 minutes (R10)
    # x $0.0096 = $0.0384: 210 s x $0.00016 = $0.0336 built, 30 s x $0.00016 = $0.0048 rounding.
    build = session(result, "wl-build")
    assert build.verdict is Verdict.BILLED and "R6" in build.session.rules
    assert (build.session.billed_units, build.unit, build.session.amount) == (4, "minute", Decimal("0.0384"))
    assert parts(build) == {
        "build": (210 * SECOND, Decimal("0.0336"), ("R6",)),
        "rounding": (30 * SECOND, Decimal("0.0048"), ("R10",)),
    }

    # "Image pull onto the node: No" (R1), like scheduling.
    pulls = [z for z in zero(result, "R1") if z.event_type is EventType.IMAGE_PULL_STARTED]
    assert [(z.workload_id, z.start) for z in pulls] == [
        ("wl-a", at("10:05:02")),
        ("wl-oom", at("10:10:05")),
        ("wl-boot", at("10:15:03")),
    ]
    assert len(zero(result, "R1")) == 7  # 3 pulls and 4 WORKLOAD_SCHEDULED
    assert all(z.explanation.startswith("R1:") for z in zero(result, "R1"))

    # "Cold start and model load: Yes" (R2), "Serving requests: Yes" (R3), "Replica terminated by autoscaling: Yes,
    # up to termination" (R4). wl-a: UP 10:05:30 to STOPPED 10:09:00 = 210 s -> 4 minutes x $0.0456 = $0.1824.
    # Cold start 10:05:30-10:06:15 = 45 s = $0.0342; serving req-1 30 s + req-2 30 s = 60 s = $0.0456;
    # idle 210 - 45 - 60 = 105 s = $0.0798; rounding 240 - 210 = 30 s = $0.0228.
    replica = session(result, "wl-a")
    assert (replica.session.billed_units, replica.session.amount) == (4, Decimal("0.1824"))
    assert replica.session.stop_reason is StopReason.SCALED_DOWN and {"R2", "R3", "R4", "R10"} <= set(
        replica.session.rules
    )
    assert parts(replica) == {
        "cold_start": (45 * SECOND, Decimal("0.0342"), ("R2", "R25")),
        "serving": (60 * SECOND, Decimal("0.0456"), ("R3", "R25")),
        "idle": (105 * SECOND, Decimal("0.0798"), ("R3", "R25")),
        "rounding": (30 * SECOND, Decimal("0.0228"), ("R10", "R25")),
    }
    assert [(r.request_id, r.attributed_amount) for r in replica.requests] == [
        ("req-1", Fraction("0.0228")),  # 30 s alone x $0.00076
        ("req-2", Fraction("0.0228")),
    ]
    steps = [(s.event_type.value, s.verdict, s.rule) for s in replica.timeline]
    assert steps == [
        ("WORKLOAD_SCHEDULED", Verdict.NOT_BILLED, "R1"),
        ("IMAGE_PULL_STARTED", Verdict.NOT_BILLED, "R1"),
        ("WORKLOAD_UP", Verdict.BILLED, "R1"),
        ("WORKLOAD_READY", Verdict.BILLED, "R2"),
        ("REQUEST_STARTED", Verdict.BILLED, "R3"),
        ("REQUEST_FINISHED", Verdict.BILLED, "R3"),
        ("REQUEST_STARTED", Verdict.BILLED, "R3"),
        ("REQUEST_FINISHED", Verdict.BILLED, "R3"),
        ("WORKLOAD_STOPPED", Verdict.BILLED, "R4"),
    ]

    # "Idle warm replicas (min_replica >= 1): Yes" (R3). ACTIVE, READY at UP: 08:00 to 10:40 = 9600 s = 160 minutes
    # x $0.036 = $5.76, all idle; of it the units starting 10:00-10:39 (units 120-159) are in the window:
    # 40 x $0.036 = $1.44 (R10).
    warm = session(result, "wl-warm")
    assert (warm.session.billed_units, warm.session.amount, warm.window_amount) == (
        160,
        Decimal("5.76"),
        Decimal("1.44"),
    )
    assert parts(warm)["idle"] == (9600 * SECOND, Decimal("5.76"), ("R3", "R25"))
    assert parts(warm)["rounding"][0] == 0

    # "Replica killed mid-request (OOM, crash): Yes, up to termination". wl-oom: UP 10:10:30 to OOM 10:12:20.5 =
    # 110.5 s -> 2 minutes (partial minute rounded up, R10) x $0.0456 = $0.0912. Cold start 30 s = $0.0228; serving
    # req-3 30 s + req-4 (10:12:00 to the kill) 20.5 s = 50.5 s = $0.03838; idle 10 s + 20 s = $0.0228; rounding
    # 9.5 s = $0.00722. req-4 alone in flight 20.5 s: $0.01558.
    oom = session(result, "wl-oom")
    assert (oom.session.stop_reason, oom.session.billed_units, oom.session.amount) == (
        StopReason.OOM,
        2,
        Decimal("0.0912"),
    )
    assert parts(oom) == {
        "cold_start": (30 * SECOND, Decimal("0.0228"), ("R2", "R25")),
        "serving": (50_500_000, Decimal("0.03838"), ("R3", "R25")),
        "idle": (30 * SECOND, Decimal("0.0228"), ("R3", "R25")),
        "rounding": (9_500_000, Decimal("0.00722"), ("R10", "R25")),
    }
    killed = {r.request_id: r for r in oom.requests}["req-4"]
    assert (killed.attributed_micros, killed.attributed_amount, killed.finished_at) == (
        Fraction(20_500_000),
        Fraction("0.01558"),
        None,
    )
    assert killed.session_stop_reason is StopReason.OOM and "R4" in killed.rules

    # "Failed boot (replica was never observed as up): No" (R5).
    (boot,) = zero(result, "R5")
    assert (boot.workload_id, boot.start, boot.event_type) == (
        "wl-boot",
        at("10:17:00"),
        EventType.WORKLOAD_BOOT_FAILED,
    )
    assert "wl-boot" not in [s.session.workload_id for s in result.sessions]

    # "Scaled to zero (min_replica: 0, no traffic): No" (R9): from wl-warm's stop to the end of the window.
    (gap,) = zero(result, "R9")
    assert (gap.start, gap.end) == (at("10:40:00"), at("11:00:00"))
    assert [ref.sequence for ref in gap.refs] == [3]  # wl-warm's WORKLOAD_STOPPED

    # "Development deployments (truss push --watch): No" (R8).
    (dev,) = zero(result, "R8")
    assert (dev.workload_id, dev.start, dev.end) == ("wl-dev", at("10:20:00"), at("10:25:00"))

    # Storage in the window: R14 1200 GB: (1000 x $0.07 + 200 x $0.05) x 324 / 2,592,000 = $80 x 0.000125 = $0.01;
    # R13 30 GB x $0.10 x 270 / 2,592,000 = $0.0003125.
    assert [(s.charge.rule, s.charge.amount) for s in result.storage] == [
        ("R14", Decimal("0.01")),
        ("R13", Decimal("0.0003125")),
    ]
    # R26: the request on wl-a after its stop is listed, charged nothing.
    (stray,) = result.anomalies
    assert stray.anomaly.workload_id == "wl-a" and stray.anomaly.reason.startswith("R26:")

    # Totals: 5.76 + 0.0384 + 0.1824 + 0.0912 = $6.072 of sessions, $0.0103125 of storage.
    assert (result.sessions_amount, result.storage_amount, result.total_amount) == (
        Decimal("6.072"),
        Decimal("0.0103125"),
        Decimal("6.0823125"),
    )
    # Every figure is traceable: each cited entry carries its hash, and the price book version's entry is cited.
    cited = {(e.ref.log_id, e.ref.sequence): e for e in result.entries}
    for charge in result.sessions:
        for ref in (*charge.refs, *(u.price_ref for u in charge.units if u.price_ref is not None)):
            assert cited[(ref.log_id, ref.sequence)].ref.entry_hash == ledger.entry(ref.log_id, ref.sequence).entry_hash
    assert ("system", 0) in cited
    assert all(not u.invoice.invoiced for s in result.sessions for u in s.units)  # no invoice yet (R17)


def test_r4_r10_r25_request_killed_mid_request_found_by_request_id_alone(ledger: Ledger) -> None:
    e = Events()
    e.add("WORKLOAD_UP", "12:00:00", "wl-k")
    e.add("WORKLOAD_READY", "12:00:20", "wl-k")
    e.add("REQUEST_STARTED", "12:00:30", "wl-k", request_id="req-x")
    e.add("REQUEST_STARTED", "12:00:40", "wl-k", request_id="req-y")
    e.add("REQUEST_FINISHED", "12:00:50", "wl-k", request_id="req-y")
    e.add("WORKLOAD_STOPPED", "12:01:05.250000", "wl-k", stop_reason="OOM")
    load(ledger, e)

    result = reconstruct_charges(ledger, DisputeQuery(request_id="req-x"))
    # The window is the request's time in flight: its start to the kill.
    assert (result.org_id, result.endpoint_id, result.start, result.end) == (
        "acme",
        "ep-chat",
        at("12:00:30"),
        at("12:01:05.250000"),
    )
    request = result.request
    assert request is not None and request.workload_id == "wl-k"
    # R25: req-x is alone 12:00:30-12:00:40 (10 s) and 12:00:50-12:01:05.25 (15.25 s), shares 12:00:40-12:00:50 with
    # req-y (10 s / 2 = 5 s): 30.25 s x $0.00076 = $0.02299, billed up to the OOM kill (R4).
    assert (request.attributed_micros, request.attributed_amount) == (Fraction(30_250_000), Fraction("0.02299"))
    assert (request.started_at, request.finished_at, request.in_flight_to) == (
        at("12:00:30"),
        None,
        at("12:01:05.250000"),
    )
    assert request.session_stop_reason is StopReason.OOM and request.rules == ("R3", "R4", "R25")
    assert "R4" in request.explanation and "OOM" in request.explanation
    assert [ref.sequence for ref in request.refs] == [2]  # REQUEST_STARTED only: it never finished

    # R4/R10: 65.25 s up to the kill -> 2 minutes x $0.0456 = $0.0912; cold 20 s = $0.0152, serving 35.25 s =
    # $0.02679, idle 10 s = $0.0076, rounding 54.75 s = $0.04161.
    (killed,) = result.sessions
    assert (killed.session.billed_units, killed.session.amount) == (2, Decimal("0.0912"))
    assert parts(killed)["rounding"] == (54_750_000, Decimal("0.04161"), ("R10", "R25"))
    assert parts(killed)["serving"] == (35_250_000, Decimal("0.02679"), ("R3", "R25"))
    assert {"R4", "R10"} <= set(killed.session.rules)
    # req-y's share: 5 s x $0.00076 = $0.0038.
    assert {r.request_id: r.attributed_amount for r in killed.requests} == {
        "req-x": Fraction("0.02299"),
        "req-y": Fraction("0.0038"),
    }


def test_r27_approximate_time_uses_a_30_minute_tolerance_by_default(sqlite_ledger: Ledger) -> None:
    ledger = sqlite_ledger
    load(ledger, lifecycle_day())
    around = reconstruct_charges(ledger, DisputeQuery(endpoint_id="ep-chat", org_id="acme", around=at("10:30:00")))
    assert (around.start, around.end) == (at("10:00:00"), at("11:00:00"))
    assert [s.session.workload_id for s in around.sessions] == ["wl-warm", "wl-build", "wl-a", "wl-oom"]
    narrow = reconstruct_charges(
        ledger, DisputeQuery(endpoint_id="ep-chat", around=at("10:11:00"), tolerance=30 * SECOND)
    )
    # 10:10:30-10:11:30: the warm replica and the OOM replica; the latter's SCHEDULED and PULL are before it.
    assert [s.session.workload_id for s in narrow.sessions] == ["wl-warm", "wl-oom"]
    assert [z.rule for z in narrow.zero_lines] == []


def test_r3_session_spanning_the_whole_window_with_no_entry_inside_it_is_found(ledger: Ledger) -> None:
    e = Events()
    e.add("WORKLOAD_UP", "06:00:00", "wl-idle", worker_type="ACTIVE")
    e.add("WORKLOAD_READY", "06:00:00", "wl-idle", worker_type="ACTIVE")
    e.add("WORKLOAD_STOPPED", "14:00:00", "wl-idle", worker_type="ACTIVE", stop_reason="SCALED_DOWN")
    e.add("WORKLOAD_UP", "07:00:00", "wl-open")  # never stopped: open at "now" (R10)
    e.add("WORKLOAD_UP", "05:00:00", "wl-gone")
    e.add("WORKLOAD_STOPPED", "06:30:00", "wl-gone", stop_reason="SCALED_DOWN")  # stopped before the window
    load(ledger, e)
    # R28: the control plane's HEARTBEAT at the test clock proves wl-open running to then.
    ledger.append_events(
        [{"event_id": "hb-1", "org_id": "acme", "type": "HEARTBEAT", "occurred_at": "2026-10-06T12:00:00Z"}]
    )
    result = reconstruct_charges(ledger, DisputeQuery(endpoint_id="ep-chat", start=at("09:00:00"), end=at("09:10:00")))
    assert [s.session.workload_id for s in result.sessions] == ["wl-idle", "wl-open"]
    idle = session(result, "wl-idle")
    # 06:00-14:00 = 480 minutes x $0.036 = $17.28; units 180-189 start in 09:00-09:10: 10 x $0.036 = $0.36.
    assert (idle.session.billed_units, idle.session.amount, idle.window_amount) == (
        480,
        Decimal("17.28"),
        Decimal("0.36"),
    )
    # The open session accrues to its evidence, the HEARTBEAT at 2026-10-06T12:00Z: 29 h = 1740 minutes x $0.0456 =
    # $79.344 (R10, R28).
    open_session = session(result, "wl-open").session
    assert (open_session.is_open, open_session.billed_units, open_session.amount) == (True, 1740, Decimal("79.344"))
    assert zero(result, "R9") == []  # something was up the whole window


def test_r13_r14_a_long_storage_interval_ending_hours_after_the_window_is_in_it(ledger: Ledger) -> None:
    """A sample reports the interval ending at its occurred_at, up to 31 days long: one ending 2 h after the window
    still covers part of it, and the lookup finds it from the rollups as reading every entry does."""
    e = Events()
    e.add("WORKLOAD_UP", "08:00:00", "wl-a")
    e.add("WORKLOAD_STOPPED", "09:05:00", "wl-a", stop_reason="SCALED_DOWN")
    # R13: 72 GB for 3 h ending 11:00:00 (08:00-11:00): 72 x $0.10 x 10800/2592000 = $0.03.
    e.add("STORAGE_SAMPLE", "11:00:00", "wl-a", storage_kind="CONTAINER_DISK", gigabytes="72", interval_seconds=10800)
    # R14: 100 GB for 1 h ending 12:00:00 (11:00-12:00), after the window: not in it.
    e.add(
        "STORAGE_SAMPLE",
        "12:00:00",
        "wl-a",
        storage_kind="NETWORK_VOLUME",
        volume_id="vol-1",
        gigabytes="100",
        interval_seconds=3600,
    )
    load(ledger, e)
    query = DisputeQuery(endpoint_id="ep-chat", org_id="acme", start=at("08:30:00"), end=at("09:00:00"))
    indexed = reconstruct_charges(ledger, query)
    whole = reconstruct(ledger.store, ledger.price_history(), query, ledger.clock())
    for result in (indexed, whole):
        assert [(line.charge.rule, line.charge.amount, line.ref.sequence) for line in result.storage] == [
            ("R13", Decimal("0.03"), 2)
        ]
        assert result.storage_amount == Decimal("0.03")
    (cited,) = [evidence for evidence in indexed.entries if evidence.ref.sequence == 2]
    assert (cited.event_type, cited.workload_id, cited.ref.entry_hash) == (
        EventType.STORAGE_SAMPLE,
        "wl-a",
        ledger.entry("org/acme", 2).entry_hash,
    )


class FakeInvoices:
    """Invoices as an InvoiceLookup: units 0-2 of wl-late on invoice #1; the later ones, which a late STOPPED made
    due after #1 was issued, on #2 and marked late (R22); storage on #1."""

    def __init__(self) -> None:
        self.ref = EntryRef("org/acme", 99, b"\x01" * 32)
        self.asked: list[int] = []

    def unit(self, session: Session, unit_index: int) -> InvoiceCoverage:
        self.asked.append(unit_index)
        if session.workload_id != "wl-late":
            return InvoiceCoverage()
        if unit_index <= 2:
            return InvoiceCoverage("1", self.ref)
        return InvoiceCoverage("2", None, late=True)

    def storage(self, charge: StorageCharge) -> InvoiceCoverage:
        return InvoiceCoverage("1", self.ref)

    def adjustment(self, seq: int) -> InvoiceCoverage:
        return InvoiceCoverage()

    def summary(self, invoice_id: str) -> None:
        return None

    def invoiced_ranges(self, session: Session) -> tuple[InvoicedRange, ...]:
        return ()


def test_r22_units_of_one_session_are_split_by_the_invoice_that_covers_them(sqlite_ledger: Ledger) -> None:
    ledger = sqlite_ledger
    e = Events()
    e.add("WORKLOAD_UP", "23:57:00", "wl-late")
    e.add("STORAGE_SAMPLE", "23:58:00", "wl-late", storage_kind="CONTAINER_DISK", gigabytes="10", interval_seconds=60)
    e.add("WORKLOAD_STOPPED", "23:59:59", "wl-late", stop_reason="SCALED_DOWN")
    e.items[-1]["occurred_at"] = "2026-10-06T00:07:00.000000Z"
    load(ledger, e)
    query = DisputeQuery(endpoint_id="ep-chat", around=at("23:58:00"), tolerance=5 * 60 * SECOND)
    invoices = FakeInvoices()
    result = reconstruct(ledger.store, ledger.price_history(), query, ledger.clock(), invoices=lambda _: invoices)
    (straddling,) = result.sessions
    # 23:57:00 to 00:07:00 = 10 minutes x $0.0456 = $0.456: units 0-2 = $0.1368 on #1, 3-9 = $0.3192 late on #2.
    assert (straddling.session.billed_units, straddling.session.amount) == (10, Decimal("0.456"))
    assert [
        (u.run.first_unit_index, u.run.count, u.run.amount, u.invoice.invoice_id, u.invoice.late)
        for u in straddling.units
    ] == [(0, 3, Decimal("0.1368"), "1", False), (3, 7, Decimal("0.3192"), "2", True)]
    assert len(invoices.asked) < 10  # found by bisection, not unit by unit
    assert straddling.units[0].invoice.explanation == "R17: on invoice #1 (entry org/acme#99)"
    assert "R22" in straddling.units[1].invoice.explanation
    assert [(line.charge.rule, line.invoice.invoice_id) for line in result.storage] == [("R13", "1")]
    assert not any(note.startswith("R17") for note in result.notes)

    # With no invoice lookup every charge says so.
    plain = reconstruct(ledger.store, ledger.price_history(), query, ledger.clock())
    assert [u.invoice.explanation for u in plain.sessions[0].units] == ["R17: not yet invoiced"]
    assert any(note.startswith("R17:") for note in plain.notes)


def test_r22_late_event_across_a_real_invoice_boundary(sqlite_url: str) -> None:
    """ledger.billing issues the invoices: September's month-end invoice #1, then a session written late, after
    #1, lands on October's invoice #2 with its September units marked late (R22)."""
    clock = FixedClock(parse_rfc3339_micros("2026-10-06T12:00:00Z"))
    store = SqlStore(sqlite_url, clock=clock)
    try:
        ledger = Ledger(store, clock=clock)
        engine = BillingEngine(ledger)
        sept = "2026-09-30T"

        def event(n: int, type: str, when: str, workload: str, **fields: Any) -> dict[str, Any]:
            return {
                "event_id": f"b-{n}",
                "org_id": "acme",
                "endpoint_id": "ep-bill",
                "workload_id": workload,
                "workload_kind": "SERVING",
                "instance_type": "A100",
                "type": type,
                "occurred_at": when,
                **fields,
            }

        # wl-on-time: 23:50 to 23:55 = 5 minutes x $0.0456 = $0.228, on invoice #1 ($0.23 to the cent, R21).
        ledger.append_events(
            [
                event(1, "WORKLOAD_UP", f"{sept}23:50:00Z", "wl-on-time"),
                event(2, "WORKLOAD_STOPPED", f"{sept}23:55:00Z", "wl-on-time", stop_reason="SCALED_DOWN"),
            ]
        )
        # The log is settled through 23:55 only (R28): September's invoice comes with the grace, at 01:00 (R17).
        (first,) = engine.close("acme", parse_rfc3339_micros("2026-10-01T01:00:00Z")).issued
        # Written after #1: wl-late 23:58 to 00:02 = 4 minutes at $0.0456; units 0-1 start in September, so they
        # are late on October's invoice #2 (R22); units 2-3 start in October. #2: $0.0912 -> $0.09 twice = $0.18.
        ledger.append_events(
            [
                event(3, "WORKLOAD_UP", f"{sept}23:58:00Z", "wl-late"),
                event(4, "WORKLOAD_STOPPED", "2026-10-01T00:02:00Z", "wl-late", stop_reason="SCALED_DOWN"),
            ]
        )
        clock.now = parse_rfc3339_micros("2026-11-01T01:00:00Z")
        (second,) = engine.close("acme", parse_rfc3339_micros("2026-11-01T01:00:00Z")).issued

        query = DisputeQuery(
            endpoint_id="ep-bill", around=parse_rfc3339_micros(f"{sept}23:59:00Z"), tolerance=10 * 60 * SECOND
        )
        result = reconstruct_charges(ledger, query)
        on_time, late = result.sessions
        assert [(u.run.first_unit_index, u.run.count, u.invoice.invoice_id, u.invoice.late) for u in on_time.units] == [
            (0, 5, "1", False)
        ]
        assert [(u.run.first_unit_index, u.run.count, u.invoice.invoice_id, u.invoice.late) for u in late.units] == [
            (0, 2, "2", True),
            (2, 2, "2", False),
        ]
        assert on_time.units[0].invoice.ref == EntryRef("org/acme", first.sequence, first.entry_hash)
        assert "R22" in late.units[0].invoice.explanation
        assert [(i.invoice_id, i.total, i.credits_applied) for i in result.invoices] == [
            ("1", Decimal("0.23"), Decimal("0")),
            ("2", Decimal("0.18"), Decimal("0")),
        ]
        cited = {(e.ref.log_id, e.ref.sequence) for e in result.entries}
        assert {("org/acme", first.sequence), ("org/acme", second.sequence)} <= cited
        assert not any(note.startswith("R17") for note in result.notes)
    finally:
        store.close()


def test_r23_adjustment_citing_a_reconstructed_entry_shows_in_later_lookups(sqlite_ledger: Ledger) -> None:
    ledger = sqlite_ledger
    load(ledger, lifecycle_day())
    query = DisputeQuery(endpoint_id="ep-chat", start=at("10:00:00"), end=at("11:00:00"))
    before = reconstruct_charges(ledger, query)
    stop = session(before, "wl-oom").refs[-1]  # the OOM STOPPED entry
    ledger.append_adjustment(
        "acme", "T-1001", "-0.0912", "R4 dispute: OOM caused by a platform bug", [("org/acme", stop.sequence)]
    )
    ledger.append_adjustment("acme", "T-9", "1", "another charge", [("org/acme", 26)])  # wl-boot SCHEDULED, 10:15
    after = reconstruct_charges(ledger, query)
    assert [(a.adjustment.ticket, a.adjustment.amount) for a in after.adjustments] == [
        ("T-1001", Decimal("-0.0912")),
        ("T-9", Decimal("1")),
    ]
    assert after.adjustments[0].corrects_here == (stop,)
    assert after.adjustments[0].explanation.startswith("R23: ticket T-1001: credit of $0.0912")
    assert after.adjustments_amount == Decimal("0.9088")
    other = reconstruct_charges(ledger, DisputeQuery(request_id="req-4"))
    assert [a.adjustment.ticket for a in other.adjustments] == ["T-1001"]


def test_r27_a_request_on_a_development_workload_is_attributed_nothing_by_r8(sqlite_ledger: Ledger) -> None:
    ledger = sqlite_ledger
    load(ledger, lifecycle_day())
    result = reconstruct_charges(ledger, DisputeQuery(request_id="req-dev", org_id="acme"))
    assert result.request is not None
    assert (result.request.workload_id, result.request.attributed_amount, result.request.rules) == (
        "wl-dev",
        Fraction(0),
        ("R8",),
    )
    assert [z.rule for z in result.zero_lines] == ["R8"]


def test_r27_bad_questions_are_refused_naming_each_field(sqlite_ledger: Ledger) -> None:
    ledger = sqlite_ledger
    load(ledger, lifecycle_day())
    with pytest.raises(InvalidInput) as err:
        reconstruct_charges(ledger, DisputeQuery(endpoint_id="ep-chat"))
    assert [v.field for v in err.value.violations] == ["approximate_time"]
    with pytest.raises(InvalidInput) as err:
        DisputeQuery(endpoint_id="ep chat", start=at("11:00:00"), end=at("10:00:00"), around=at("10:00:00")).check()
    assert [v.field for v in err.value.violations] == ["endpoint_id", "end_time", "approximate_time"]
    with pytest.raises(InvalidInput) as err:
        DisputeQuery(request_id="req-1", tolerance=SECOND).check()
    assert [v.field for v in err.value.violations] == ["tolerance"]
    with pytest.raises(InvalidInput) as err:
        reconstruct_charges(ledger, DisputeQuery(endpoint_id="ep-other", request_id="req-1"))
    assert "ran on endpoint ep-chat" in err.value.violations[0].description
    with pytest.raises(NotFound):
        reconstruct_charges(ledger, DisputeQuery(request_id="req-none"))
    with pytest.raises(NotFound):
        reconstruct_charges(ledger, DisputeQuery(endpoint_id="ep-none", around=at("10:00:00")))


def test_r21_non_terminating_shares_are_written_with_their_exact_fraction(ledger: Ledger) -> None:
    """Three requests in flight together 10:00:20-10:00:21 on an A100 FLEX replica ($0.00076/s): R25 gives each a
    third of that second, 1,000,000/3 µs, and $0.00076/3 = 19/75,000 dollars, neither a terminating decimal. The
    answer's decimal fields hold 50 significant digits and say they are not exact, it keeps the exact fraction, and
    its explanation writes them exactly with the repetend in parentheses (docs/money.md): 1/3 s is `0.(3)`, 19/75,000
    dollars `$0.00025(3)`. Exactly representable parts stay exact: a lone request's whole second
    is "1" s and $0.00076."""
    e = Events()
    e.lifecycle("wl-1", ("WORKLOAD_UP", "10:00:00"), ("WORKLOAD_READY", "10:00:10"))
    for request in ("r-1", "r-2", "r-3"):
        e.add("REQUEST_STARTED", "10:00:20", "wl-1", request_id=request)
        e.add("REQUEST_FINISHED", "10:00:21", "wl-1", request_id=request)
    e.add("REQUEST_STARTED", "10:00:30", "wl-1", request_id="r-alone")
    e.add("REQUEST_FINISHED", "10:00:31", "wl-1", request_id="r-alone")
    e.lifecycle("wl-1", ("WORKLOAD_STOPPED", "10:01:00"))
    load(ledger, e)
    result = reconstruct_charges(ledger, DisputeQuery(org_id="acme", endpoint_id="ep-chat", around=at("10:00:30")))
    (session,) = result.sessions
    shares = {r.request_id: r for r in session.requests}
    third = shares["r-1"]
    assert (third.attributed_micros, third.attributed_amount) == (Fraction(1_000_000, 3), Fraction(19, 75_000))
    assert third.attributed_seconds_text == "0." + "3" * 50  # 50 significant digits
    assert third.attributed_amount_text == "0.00025" + "3" * 48
    assert not third.attributed_amount_exact
    assert "attributed 0.(3) s of serving time = $0.00025(3)" in third.explanation
    alone = shares["r-alone"]
    assert (alone.attributed_seconds_text, alone.attributed_amount_text, alone.attributed_amount_exact) == (
        "1",
        "0.00076",
        True,
    )
    assert "attributed 1 s of serving time = $0.00076" in alone.explanation
