"""Billing only what the log proves (issue #22; R10, R17, R28): the example day through a real server and closer.

examples/day.jsonl is 2026-10-05 of org `acme` with an org HEARTBEAT every 2 minutes (R28). Ingested into a server
whose period closer evaluates every 0.05 s, in any batching, it must give the same invoices: threshold invoices cut
in event time where the uninvoiced usage first exceeds $50.00 (R17), then October's month-end invoice once the
wall clock passes November 1 plus the grace period. None bills a unit past the evidence of its session, and every
one re-derives exactly from the entries before it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tempfile
import threading
from collections.abc import Iterator, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from usageledger.v1 import account_pb2 as apb
from usageledger.v1 import account_pb2_grpc as apb_grpc

from client.cli_backfill import bracket
from client.event_file import read_event_file
from client.ledger_client import LedgerClient
from ledger.billing import BillingRefused, Invoice, Trigger, round_cents
from ledger.billing.books import load_books
from ledger.billing.invoice_entry import USAGE_KINDS
from ledger.billing.invoice_lines import storage_amount
from ledger.billing.rederive import rederive_invoices
from ledger.errors import InvalidInput, NotFound
from ledger.events import parse_event
from ledger.intake import derive_index
from ledger.log.entry import SYSTEM_LOG, EntryKind, canonical_body, org_log_id
from ledger.plans import PlanHistory
from ledger.ports import NewEntry
from ledger.pricebook import PriceHistory, default_price_book
from ledger.rating import rate_org
from ledger.rating.evidence import settled_through
from ledger.rating.storage import SECONDS_PER_MONTH
from ledger.timeutil import format_micros, parse_rfc3339_micros
from server.app import RunningServer, start_server
from tests.billing_support import MINUTE, SECOND, Desk, assert_invoices_rederive, heartbeat, t
from tests.billing_support import event as usage_event
from tests.conftest import EXAMPLE_DAY, FixedClock
from tests.test_billing_properties import check_coverage
from wire.convert import timestamp_to_micros

DAY_END = parse_rfc3339_micros("2026-10-06T00:30:00Z")  # after the day, long before October's grace ends
AFTER_GRACE = parse_rfc3339_micros("2026-11-01T01:00:01Z")  # R17: November 1 plus the 1 h grace, passed


def day_events() -> list[dict[str, Any]]:
    return [json.loads(line) for line in EXAMPLE_DAY.read_text().splitlines() if line.strip()]


def settle(running: RunningServer) -> None:
    """Wait until the closer has run two whole passes after the last append (the first may have started before)."""
    closer = running.parts.billing.closer
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
        return list(load_books(running.ledger.store, "acme").invoices)
    finally:
        running.stop(grace=None)


def chunks(events: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(events), size):
        yield events[start : start + size]


@pytest.fixture
def desk(sqlite_url: str) -> Iterator[Desk]:
    desk = Desk(sqlite_url, "2026-10-04T00:00:00Z")
    desk.engine.set_payment_method("acme", "pm_1NqLiJLkdIwHu7ix")  # keep R19 out of the way
    yield desk
    desk.close_store()


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


# -- R29 backfills ---------------------------------------------------------------------------------------------------


def test_r29_an_open_backfill_holds_the_grace_back_while_settled_through_still_cuts(desk: Desk) -> None:
    """October's events arrive on December 6 (long after the grace), inside a backfill. wl-1: B200 FLEX 10:00-16:00
    on 2026-10-05 (360 x $0.144 = $51.84). While the backfill is open, the threshold invoice is cut as the
    settled-through time passes its crossing (348 units, $50.11), but the month-end waits; closed, the grace
    issues it with the rest (12 x $0.144 = $1.728 -> $1.73)."""
    desk.at("2026-12-06T09:00:00Z")
    backfill, known = desk.engine.open_backfill(
        "acme", "oct-replay", t("2026-10-01T00:00:00Z"), t("2026-11-01T00:00:00Z"), "control plane outage"
    )
    assert (backfill.is_open, known) == (True, False)
    desk.append(usage_event("acme", "wl-1", "WORKLOAD_UP", "2026-10-05T10:00:00Z"))
    assert desk.close("2026-12-06T09:00:00Z", heartbeat=False).issued == ()  # 0 s proven (R28), grace held (R29)
    desk.append(heartbeat("acme", "2026-10-05T15:50:00Z"))
    [threshold] = desk.close("2026-12-06T09:00:01Z", heartbeat=False).issued
    assert (threshold.trigger, format_micros(threshold.period_end), threshold.total) == (
        Trigger.THRESHOLD,
        "2026-10-05T15:47:00.000001Z",
        Decimal("50.11"),
    )
    desk.append(usage_event("acme", "wl-1", "WORKLOAD_STOPPED", "2026-10-05T16:00:00Z", stop_reason="SCALED_DOWN"))
    held = desk.close("2026-12-06T09:00:02Z", heartbeat=False)
    assert held.issued == () and "R29: backfill oct-replay" in held.explanation
    desk.engine.close_backfill("acme", "oct-replay", "every October event sent")
    [month_end] = desk.close("2026-12-06T09:00:03Z", heartbeat=False).issued
    assert (month_end.trigger, month_end.total) == (Trigger.MONTH_END, Decimal("1.73"))
    assert month_end.grace is not None and month_end.grace.wall_clock == t("2026-12-06T09:00:03Z")
    assert_invoices_rederive(desk)


def test_r29_the_ledger_closes_a_backfill_left_open_for_24_hours(desk: Desk) -> None:
    desk.at("2026-12-06T09:00:00Z")
    desk.engine.open_backfill("acme", "stuck", t("2026-10-01T00:00:00Z"), t("2026-10-02T00:00:00Z"), "replay")
    desk.at("2026-12-07T08:59:59Z")
    desk.engine.tick("acme")
    assert desk.engine.books("acme").backfills[0].is_open
    desk.at("2026-12-07T09:00:00Z")
    desk.engine.tick("acme")
    [closed] = desk.engine.books("acme").backfills
    assert closed.closed is not None and closed.closed.reason == "R29: closed by the ledger: left open for 24 hours"
    assert closed.closed.at == t("2026-12-07T09:00:00Z")


def test_r29_a_backfill_request_names_every_bad_field(desk: Desk) -> None:
    with pytest.raises(InvalidInput) as err:
        desk.engine.open_backfill("acme", "bad id!", t("2026-10-02T00:00:00Z"), t("2026-10-01T00:00:00Z"), " ")
    assert {v.field for v in err.value.violations} == {"backfill_id", "to_time", "reason"}
    desk.engine.open_backfill("acme", "b1", t("2026-10-01T00:00:00Z"), t("2026-10-02T00:00:00Z"), "replay")
    _, known = desk.engine.open_backfill("acme", "b1", t("2026-10-01T00:00:00Z"), t("2026-10-02T00:00:00Z"), "replay")
    assert known
    with pytest.raises(BillingRefused, match="R29"):
        desk.engine.open_backfill("acme", "b1", t("2026-10-01T00:00:00Z"), t("2026-10-03T00:00:00Z"), "replay")
    with pytest.raises(NotFound):
        desk.engine.close_backfill("acme", "never-opened", "done")


@pytest.mark.parametrize("size", [1, 1000])
def test_r29_the_example_day_sent_in_chunks_inside_one_backfill_gives_the_same_invoices(
    size: int, whole: list[Invoice], tmp_path: Any
) -> None:
    """Sent on November 1 after the grace, line by line (one RPC per line) or in 1,000-event chunks, while the closer
    runs: without the backfill the grace would issue October's month-end invoice after the first chunk (R17);
    inside it, the invoices are those of the day ingested whole, live."""
    clock = FixedClock(AFTER_GRACE)
    running = start_server(f"sqlite:///{tmp_path}/ledger.db", "127.0.0.1:0", clock=clock, close_interval=0.05)
    try:
        with (
            LedgerClient(f"127.0.0.1:{running.port}", retries=0) as client,
            bracket(
                client, b"the example day", [e.event for e in read_event_file(EXAMPLE_DAY, clock())], True
            ) as opened,
        ):
            assert opened == ["ingest-" + hashlib.sha256(b"the example day").hexdigest()[:16]]
            for chunk in chunks(day_events(), size):
                client.append_events(chunk)
        settle(running)
        assert shape(load_books(running.ledger.store, "acme").invoices) == shape(whole)
    finally:
        running.stop(grace=None)


# -- R19 and R16 -----------------------------------------------------------------------------------------------------


def test_r19_a_new_org_starts_with_the_starter_credit_and_account_state_is_right_without_the_closer(
    sqlite_url: str,
) -> None:
    """--starter-credit 5.00: the CREDIT entry goes in with the org's first events, once. No closer runs, yet
    GetAccountState reports what R19 gives now: A100 FLEX ($0.0456/min) proven running 110 minutes by a HEARTBEAT
    is $5.016 -> $5.02, more than the $5.00 of credit, with no payment method: DEACTIVATED."""
    clock = FixedClock(t("2026-10-05T12:00:00Z"))
    running = start_server(sqlite_url, "127.0.0.1:0", clock=clock, starter_credit=Decimal("5.00"))
    try:
        target = f"127.0.0.1:{running.port}"
        with LedgerClient(target, retries=0) as client, grpc.insecure_channel(target) as channel:
            client.append_events(
                [usage_event("acme", "wl-1", "WORKLOAD_UP", "2026-10-05T09:00:00Z", instance_type="A100")]
            )
            client.append_events([heartbeat("acme", "2026-10-05T10:49:00Z")])  # 109 min: $4.9704 -> $4.97
            accounts = apb_grpc.AccountServiceStub(channel)
            state = accounts.GetAccountState(apb.GetAccountStateRequest(org_id="acme"))
            assert (state.state, state.credit_left, state.open_period_total) == (
                apb.ACCOUNT_STATE_ACTIVE,
                "5.00",
                "4.97",
            )
            assert format_micros(timestamp_to_micros(state.settled_through_time)) == "2026-10-05T10:49:00.000000Z"
            client.append_events([heartbeat("acme", "2026-10-05T10:50:00Z")])  # 110 min: $5.016 -> $5.02
            state = accounts.GetAccountState(apb.GetAccountStateRequest(org_id="acme"))
            assert (state.state, state.open_period_amount_due) == (apb.ACCOUNT_STATE_DEACTIVATED, "0.02")
            assert not state.HasField("last_change")  # R19 holds now; no closer has recorded it
        credits = running.ledger.store.entries_of_kind(org_log_id("acme"), ["CREDIT"])
        assert [(e.sequence, e.body_json()["amount"], "R19" in e.body_json()["reason"]) for e in credits] == [
            (1, "5.00", True)  # right after the first event, in the same append
        ]
    finally:
        running.stop(grace=None)


def test_r16_a_credit_granted_after_the_month_ended_applies_to_its_late_invoice(desk: Desk) -> None:
    """R16: the credits available when an invoice is issued: October's month-end invoice (10 x $0.144 = $1.44),
    issued on November 3 because the settled-through time only then reaches November, takes a credit granted on
    November 2."""
    desk.session("wl-1", "2026-10-05T09:00:00Z", "2026-10-05T09:10:00Z")
    desk.at("2026-11-02T00:00:00Z")
    desk.engine.grant_credit("acme", "1.00", "sorry for the outage", None, "outage")
    [invoice] = desk.close("2026-11-03T00:00:00Z").issued
    assert (invoice.total, invoice.credits_total, invoice.amount_due) == (
        Decimal("1.44"),
        Decimal("1.00"),
        Decimal("0.44"),
    )
    assert invoice.issued_at == t("2026-11-03T00:00:00Z")
    assert_invoices_rederive(desk)


def test_r15_a_crossing_only_late_events_reveal_is_recorded_with_its_own_instant_marked_late(desk: Desk) -> None:
    """Limit $10.00/h. wl-a (B200 FLEX, $0.144/min) from 10:00 is evaluated at 10:58 alone: $8.352, no flip. Then wl-b's
    events (H100 PRO FLEX, $0.0696/min, from 10:30) arrive: at 10:56 the hour held 57 x 0.144 + 27 x 0.0696 =
    $10.0872 > $10.00. The crossing is recorded at 10:56, marked late (R15)."""
    desk.ledger.set_account("acme", {"effective_from": "2026-01-01T00:00:00Z", "spend_limit_per_hour": "10.00"})
    desk.session("wl-a", "2026-10-05T10:00:00Z")
    desk.heartbeat("2026-10-05T10:58:00Z")
    desk.at("2026-10-05T10:58:00Z")
    assert desk.engine.evaluate_account("acme") == []
    desk.session("wl-b", "2026-10-05T10:30:00Z", instance_type="H100 PRO")
    desk.heartbeat("2026-10-05T10:59:00Z")
    desk.at("2026-10-05T10:59:00Z")
    [flip] = desk.engine.evaluate_account("acme")
    assert format_micros(flip.at) == "2026-10-05T10:56:00.000000Z" and flip.figures["late"] == "true"
    assert flip.figures["hourly_spend"] == "10.0872" and "late" in flip.explanation


@settings(max_examples=300, deadline=None)
@given(
    gb_seconds=st.decimals(min_value=-(10**12), max_value=10**12, places=9, allow_nan=False, allow_infinity=False),
    price=st.sampled_from([Decimal("0.1"), Decimal("0.07"), Decimal("0.05"), Decimal(0)]),
)
def test_r21_storage_line_amounts_in_integers_equal_the_exact_fraction_rounded(
    gb_seconds: Decimal, price: Decimal
) -> None:
    """The threshold walk's fast storage amount is R21's exact one: GB-seconds x price / 2,592,000, half-up."""
    exact = round_cents(Fraction(gb_seconds) * Fraction(price) / SECONDS_PER_MONTH)
    assert storage_amount(gb_seconds, price) == exact and str(storage_amount(gb_seconds, price)) == str(exact)


def test_r28_audit_fails_an_invoice_that_bills_a_unit_past_the_evidence(desk: Desk) -> None:
    """An INVOICE entry charging units its session's evidence does not reach (forged after the fact, chain intact)
    fails re-derivation, naming R28, besides every figure that differs."""
    desk.session("wl-1", "2026-10-05T00:00:00Z")
    desk.heartbeat("2026-10-05T01:00:00Z")  # 60 units proven (R28)
    [invoice] = desk.close("2026-11-01T01:00:00Z", heartbeat=False).issued
    assert [(s.first, s.end) for s in invoice.sessions] == [(0, 60)]
    body = invoice.body()
    body.update(number=2, idempotency_key="invoice:2")
    body["covers"]["sessions"][0].update({"from": 60, "to": 120})  # units 60-119: never proven running
    desk.store.append(
        [NewEntry(org_log_id("acme"), EntryKind.INVOICE, canonical_body(body), derive_index(EntryKind.INVOICE, body))]
    )
    system = list(desk.store.iter_entries(SYSTEM_LOG))
    first, forged = rederive_invoices("acme", desk.store.iter_entries(org_log_id("acme")), system)
    assert first.ok and not forged.ok
    assert any(d.startswith("R28: bills unit 119 of workload wl-1") for d in forged.differences), forged.differences


def test_r29_ledgerctl_events_backfill_open_list_close(sqlite_url: str) -> None:
    """`ledgerctl events backfill`: open (twice: the same backfill answers again), list, close; bad input exits 1
    naming the field (R29)."""
    from client.cli import app
    from tests.cli_support import LedgerctlRunner

    runner = LedgerctlRunner(env={"COLUMNS": "220", "LEDGER_TARGET": None})
    running = start_server(sqlite_url, "127.0.0.1:0", clock=FixedClock(t("2026-12-06T09:00:00Z")))
    try:
        target = ["--target", f"127.0.0.1:{running.port}"]
        common = ["events", "backfill", "open", "acme", "oct", "--from", "2026-10-01T00:00:00Z"]
        opened = runner.invoke(app, [*common, "--to", "2026-11-01T00:00:00Z", "--reason", "outage", "--json", *target])
        assert opened.exit_code == 0, opened.stdout
        assert json.loads(opened.stdout)["backfill"]["open"] is True
        again = runner.invoke(app, [*common, "--to", "2026-11-01T00:00:00Z", "--reason", "outage", "--json", *target])
        assert json.loads(again.stdout)["result"] == "already open"
        bad = runner.invoke(app, [*common, "--to", "2026-09-01T00:00:00Z", *target])
        assert bad.exit_code == 1 and "to_time" in bad.stderr and "R29" in bad.stderr
        listed = runner.invoke(app, ["events", "backfill", "list", "acme", *target])
        assert listed.exit_code == 0 and "oct" in listed.stdout and "open" in listed.stdout
        closed = runner.invoke(app, ["events", "backfill", "close", "acme", "oct", "--json", *target])
        assert closed.exit_code == 0 and json.loads(closed.stdout)["backfill"]["open"] is False
        listed = runner.invoke(app, ["events", "backfill", "list", "acme", "--json", *target])
        [only] = json.loads(listed.stdout)["backfills"]
        assert (only["backfill_id"], only["open"], only["close_reason"]) == ("oct", False, "every past event sent")
    finally:
        running.stop(grace=None)
