"""Billing only what the log proves (issue #22; R10, R17, R28): the example day through a real server and closer.

examples/day.jsonl is 2026-10-05 of org `acme` with an org HEARTBEAT every 2 minutes (R28). Ingested into a server
whose period closer evaluates every 0.05 s, in any batching, it must give the same invoices: threshold invoices cut
in event time where the uninvoiced usage first exceeds $50.00 (R17), then October's month-end invoice once the
wall clock passes November 1 plus the grace period. None bills a unit past the evidence of its session, and every
one re-derives exactly from the entries before it.
"""

from __future__ import annotations

import itertools
import json
import tempfile
import threading
from collections.abc import Iterator, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

from client.ledger_client import LedgerClient
from ledger.billing import Invoice, Trigger
from ledger.billing.engine import load_books
from ledger.billing.invoices import USAGE_KINDS
from ledger.billing.rederive import rederive_invoices
from ledger.entry import SYSTEM_LOG, org_log_id
from ledger.events import parse_event
from ledger.plans import PlanHistory
from ledger.pricebook import PriceHistory, default_price_book
from ledger.rating import rate_org
from ledger.rating.evidence import settled_through
from ledger.timeutil import format_micros, parse_rfc3339_micros
from server.app import RunningServer, start_server
from server.billing_service import closer_for
from tests.billing_support import MINUTE, SECOND, Desk, assert_invoices_rederive, heartbeat, t
from tests.billing_support import event as usage_event
from tests.conftest import EXAMPLE_DAY, FixedClock
from tests.test_billing_properties import check_coverage

DAY_END = parse_rfc3339_micros("2026-10-06T00:30:00Z")  # after the day, long before October's grace ends
AFTER_GRACE = parse_rfc3339_micros("2026-11-01T01:00:01Z")  # R17: November 1 plus the 1 h grace, passed


def day_events() -> list[dict[str, Any]]:
    return [json.loads(line) for line in EXAMPLE_DAY.read_text().splitlines() if line.strip()]


def settle(running: RunningServer) -> None:
    """Wait until the closer has run two whole passes after the last append (the first may have started before)."""
    closer = closer_for(running.ledger)
    assert closer is not None
    for _ in range(2):
        closer.wait_for_pass(closer.passes, timeout=60)


def shape(invoices: Sequence[Invoice]) -> list[tuple[Any, ...]]:
    """Everything an invoice says about money and time, without its place in the log."""
    return [
        (
            inv.number,
            inv.trigger.value,
            format_micros(inv.period_start),
            format_micros(inv.period_end),
            tuple((line.kind.value, line.rule, str(line.quantity), str(line.amount), line.late) for line in inv.lines),
            str(inv.total),
            tuple((s.workload_id, s.first, s.end, s.reversal) for s in inv.sessions),
            inv.storage_sequences and len(inv.storage_sequences),
        )
        for inv in invoices
    ]


def ingest(url: str, batches: Iterator[list[dict[str, Any]]]) -> list[Invoice]:
    clock = FixedClock(DAY_END)
    running = start_server(url, "127.0.0.1:0", clock=clock, close_interval=0.05)
    try:
        with LedgerClient(f"127.0.0.1:{running.port}", retries=0) as client:
            for batch in batches:
                client.append_events(batch)
        settle(running)
        clock.now = AFTER_GRACE
        settle(running)
        store = running.ledger.store
        system = list(store.iter_entries(SYSTEM_LOG))
        findings = rederive_invoices("acme", store.iter_entries(org_log_id("acme")), system)
        assert findings and all(f.ok for f in findings), [f.differences for f in findings if not f.ok]
        return list(load_books(running.ledger, "acme").invoices)
    finally:
        running.stop(grace=None)


def chunks(events: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(events), size):
        yield events[start : start + size]


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> list[Invoice]:
    url = f"sqlite:///{tmp_path_factory.mktemp('whole')}/ledger.db"
    return ingest(url, iter([day_events()]))


def test_r17_r28_the_example_day_gives_threshold_invoices_then_the_month_end(whole: list[Invoice]) -> None:
    triggers = [inv.trigger for inv in whole]
    assert triggers[:-1] == [Trigger.THRESHOLD] * (len(whole) - 1) and triggers[-1] is Trigger.MONTH_END
    for invoice in whole[:-1]:
        # R17: each threshold invoice holds the unit or interval that took the usage over $50.00, and no more.
        assert invoice.usage_after_discount > Decimal("50.00")
        assert invoice.period_end <= (invoice.settled_through or 0)
        assert invoice.grace is None
    last = whole[-1]
    assert format_micros(last.period_end) == "2026-11-01T00:00:00.000000Z"
    assert last.grace is not None and last.grace.wall_clock == AFTER_GRACE  # the day settled at 23:59:59.5 only
    assert not any(line.late for inv in whole for line in inv.lines)  # every cut waited for its evidence


@pytest.mark.parametrize("size", [7, 1000])
def test_r17_r28_the_example_day_gives_the_same_invoices_in_any_batching(
    size: int, whole: list[Invoice], tmp_path: Any
) -> None:
    batched = ingest(f"sqlite:///{tmp_path}/ledger.db", chunks(day_events(), size))
    assert shape(batched) == shape(whole)


def test_r21_r24_the_invoices_hold_the_days_usage_once(whole: list[Invoice]) -> None:
    """Every unit and storage interval of the day is on exactly one invoice: the invoices' usage lines, unrounded,
    add up to the day rated on its own (R1-R14). Rounded per line and invoice (R21) they total $177.64: the day on
    one invoice would be $177.61, and each of the four invoices rounds its own lines (3 cents over 4 invoices)."""
    prices = PriceHistory([default_price_book()])
    events = [
        (parse_event(raw, now_micros=DAY_END, known_instance_type=prices.knows), seq)
        for seq, raw in enumerate(day_events())
    ]
    day = rate_org(events, prices, PlanHistory())
    exact_day = sum((Fraction(s.amount) for s in day.sessions), Fraction(0))
    exact_day += sum((c.exact_amount for c in day.storage), Fraction(0))
    invoiced = sum(
        (line.exact_amount() for inv in whole for line in inv.lines if line.kind in USAGE_KINDS), Fraction(0)
    )
    assert invoiced == exact_day
    assert sum((inv.total for inv in whole), Decimal(0)) == Decimal("177.64")
    assert [str(inv.total) for inv in whole] == ["50.02", "50.04", "50.05", "27.53"]


# -- properties: any batching and any closer schedule (R17, R22, R28) ------------------------------------------------

T0 = parse_rfc3339_micros("2026-10-05T00:00:00Z")
HEARTBEAT_EVERY = 120 * SECOND


@st.composite
def live_days(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A control plane's events of a day, in occurred_at order: sessions with container-disk samples every 300 s
    and a final one at the stop, and an org HEARTBEAT every 2 minutes, each after every event before it (R28)."""
    timed: list[tuple[int, int, dict[str, Any]]] = []
    end = T0
    for index in range(draw(st.integers(1, 3))):
        workload = f"wl-{index}"
        fields = {"instance_type": draw(st.sampled_from(("B200", "A100"))), "endpoint_id": f"ep-{index % 2}"}
        up = T0 + draw(st.integers(0, 240)) * MINUTE + draw(st.integers(0, 59)) * SECOND
        stop = up + draw(st.integers(60, 9 * 3600)) * SECOND
        end = max(end, stop)
        timed.append((up, 0, usage_event("acme", workload, "WORKLOAD_UP", up, **fields)))
        disk = str(draw(st.sampled_from((20, 50))))
        sample = up + 300 * SECOND
        while sample < stop:
            storage = {"storage_kind": "CONTAINER_DISK", "gigabytes": disk, "interval_seconds": 300}
            timed.append((sample, 1, usage_event("acme", workload, "STORAGE_SAMPLE", sample, **fields, **storage)))
            sample += 300 * SECOND
        last = -(-(stop - (sample - 300 * SECOND)) // SECOND)
        final = {"storage_kind": "CONTAINER_DISK", "gigabytes": disk, "interval_seconds": last}
        timed.append((stop, 1, usage_event("acme", workload, "STORAGE_SAMPLE", stop, **fields, **final)))
        timed.append(
            (stop, 2, usage_event("acme", workload, "WORKLOAD_STOPPED", stop, stop_reason="SCALED_DOWN", **fields))
        )
    beat = T0 + HEARTBEAT_EVERY
    while beat <= end:
        timed.append((beat, -1, heartbeat("acme", beat)))
        beat += HEARTBEAT_EVERY
    timed.sort(key=lambda item: (item[0], item[1]))
    return [body for _, _, body in timed]


def deliver(
    events: Sequence[dict[str, Any]], cuts: Sequence[int], closes: Sequence[bool]
) -> tuple[list[Invoice], Desk, Any]:
    """Append `events` in batches split at `cuts`, running the closer after the batches `closes` marks, then once
    more after the last one; the wall clock stays before October's grace ends (R17)."""
    tmp = tempfile.TemporaryDirectory()
    desk = Desk(f"sqlite:///{tmp.name}/ledger.db", "2026-10-04T00:00:00Z")
    desk.engine.set_payment_method("acme", "pm_1NqLiJLkdIwHu7ix")  # keep R19 out of the way
    bounds = [0, *sorted(set(cuts)), len(events)]
    for (start, stop), close in zip(itertools.pairwise(bounds), itertools.cycle(closes or [False]), strict=False):
        desk.append(*events[start:stop])
        if close:
            desk.engine.close("acme")
    desk.at("2026-10-06T12:00:00Z")
    desk.engine.close("acme")
    return desk.invoices(), desk, tmp


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=live_days(),
    cuts=st.lists(st.integers(1, 400), max_size=12),
    closes=st.lists(st.booleans(), max_size=12),
    other_cuts=st.lists(st.integers(1, 400), max_size=12),
)
def test_r17_r28_in_order_delivery_gives_the_same_invoices_whatever_the_batches_and_closer_schedule(
    events: list[dict[str, Any]], cuts: list[int], closes: list[bool], other_cuts: list[int]
) -> None:
    first, first_desk, first_tmp = deliver(events, [c for c in cuts if c < len(events)], closes)
    second, second_desk, second_tmp = deliver(events, [c for c in other_cuts if c < len(events)], [True])
    try:
        hypothesis_event(f"{len(first)} invoices")
        assert shape(first) == shape(second)
        for invoice in first:
            assert not invoice.late_lines  # every cut waited for its evidence (R28)
        assert_invoices_rederive(first_desk)
    finally:
        first_desk.close_store()
        second_desk.close_store()
        first_tmp.cleanup()
        second_tmp.cleanup()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=live_days(), data=st.data())
def test_r17_r22_shuffled_delivery_never_invoices_usage_twice_or_leaves_it_out(
    events: list[dict[str, Any]], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(events))
    cuts = data.draw(st.lists(st.integers(1, max(1, len(events) - 1)), max_size=8))
    closes = data.draw(st.lists(st.booleans(), min_size=1, max_size=8))
    _, desk, tmp = deliver(shuffled, cuts, closes)
    try:
        desk.at("2026-11-01T01:00:01Z")  # R17: October's grace has passed: everything is invoiced
        desk.engine.close("acme")
        check_coverage(desk, t("2026-11-01T00:00:00Z"))
        assert_invoices_rederive(desk)
        hypothesis_event("late lines" if any(inv.late_lines for inv in desk.invoices()) else "no late line")
    finally:
        desk.close_store()
        tmp.cleanup()


def test_r17_threads_appending_while_the_closer_runs_never_get_an_invoice_from_a_stale_rating(db_url: str) -> None:
    """Four threads append a day of B200 sessions and HEARTBEATs (R28) while another evaluates the org back to back
    (R17). Every invoice must be rated from exactly the entries before it (rated_log_size is its own sequence, or
    that of the first invoice of its one append) and re-derive from them; every unit is on exactly one invoice."""
    desk = Desk(db_url, "2026-10-04T00:00:00Z")
    try:
        desk.engine.set_payment_method("acme", "pm_1NqLiJLkdIwHu7ix")
        desk.at("2026-10-06T00:00:00Z")
        stop = threading.Event()
        failures: list[BaseException] = []

        def closer() -> None:
            while not stop.is_set():
                try:
                    desk.engine.tick("acme")
                except BaseException as err:
                    failures.append(err)
                    return

        def writer(index: int) -> None:
            try:
                for hour in range(12):
                    up = T0 + (hour * 2 * 60 + index * 7) * MINUTE
                    workload = f"wl-{index}-{hour}"
                    desk.ledger.append_events(
                        [
                            usage_event("acme", workload, "WORKLOAD_UP", up),
                            usage_event(
                                "acme", workload, "WORKLOAD_STOPPED", up + 90 * MINUTE, stop_reason="SCALED_DOWN"
                            ),
                        ]
                    )
                    desk.ledger.append_events([heartbeat("acme", up + 100 * MINUTE)])
            except BaseException as err:
                failures.append(err)

        evaluating = threading.Thread(target=closer)
        evaluating.start()
        writers = [threading.Thread(target=writer, args=(index,)) for index in range(4)]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join()
        stop.set()
        evaluating.join()
        assert failures == []
        desk.engine.close("acme")
        invoices = desk.invoices()
        assert len(invoices) >= 10  # 48 sessions x 90 x $0.144 = $622.08: a crossing every $50
        previous: Invoice | None = None
        for invoice in invoices:
            batch = previous is not None and previous.sequence == invoice.sequence - 1
            assert invoice.rated_log_size == invoice.sequence or (
                batch and previous is not None and invoice.rated_log_size == previous.rated_log_size
            )
            previous = invoice
        assert_invoices_rederive(desk)
        settled = settled_through(desk.engine.rating("acme", desk.clock.now))
        assert settled is not None
        check_coverage(desk, max(settled, invoices[-1].period_end))  # what open_period drafts to (R28)
    finally:
        desk.close_store()
