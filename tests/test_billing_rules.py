"""Billing rules R15-R23 on the engine, each with figures worked out by hand.

Rates (R11, the default price book): B200 FLEX $0.00240/s = $0.144 a minute; A100 FLEX $0.00076/s = $0.0456 a minute;
H100 PRO FLEX $0.00116/s = $0.0696 a minute. Orgs are metered per minute (R10) unless a test says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction

import pytest

from ledger.billing import (
    AccountState,
    BillingRefused,
    Cadence,
    GraceFired,
    LineKind,
    StateChangeType,
    Trigger,
    hourly_spend,
    invoice_covering_adjustment,
    invoice_covering_storage,
    invoice_covering_unit,
    invoices_of,
    round_cents,
)
from ledger.errors import InvalidInput
from ledger.timeutil import format_micros
from tests.billing_support import Desk, amounts, assert_invoices_rederive, event, t

D = Decimal


@pytest.fixture
def desk(sqlite_url: str) -> Iterator[Desk]:
    d = Desk(sqlite_url, "2026-10-01T00:00:00Z")
    yield d
    assert_invoices_rederive(d)
    d.close_store()


def settings(desk: Desk, **values: object) -> None:
    desk.ledger.set_account("acme", {"effective_from": "2026-01-01T00:00:00Z", **values})


# -- R21 ----------------------------------------------------------------------------------------------------------


def test_r21_half_up_to_cents() -> None:
    assert round_cents(D("0.125")) == D("0.13")
    assert round_cents(D("0.124999")) == D("0.12")
    assert round_cents(D("0.135")) == D("0.14")  # half-up, not half-even (which gives 0.14 here, 0.12 above)
    assert round_cents(D("0.145")) == D("0.15")
    assert round_cents(D("-0.125")) == D("-0.13")  # ties away from zero for credits
    assert round_cents(Fraction(1, 8)) == D("0.13")  # storage amounts are exact fractions (R13, R14)
    assert round_cents(Fraction(1, 3)) == D("0.33")


def test_r21_each_line_rounds_half_up_and_the_total_is_the_sum_of_lines(desk: Desk) -> None:
    settings(desk, granularity="PER_SECOND")
    # H100 PRO FLEX for 125 s on two endpoints: 125 x $0.00116 = $0.145 exactly on each.
    for endpoint in ("ep-a", "ep-b"):
        desk.session(
            f"wl-{endpoint}",
            "2026-10-05T09:00:00Z",
            "2026-10-05T09:02:05Z",
            endpoint_id=endpoint,
            instance_type="H100 PRO",
        )
    [invoice] = desk.close("2026-11-01T00:00:00Z").issued
    assert amounts(invoice) == [("COMPUTE", "R10/R11", "0.15"), ("COMPUTE", "R10/R11", "0.15")]
    assert [line.quantity for line in invoice.lines] == [125, 125]
    assert invoice.lines[0].unit_price == D("0.00116")
    # R21: $0.30, not round($0.29): the total is the sum of rounded lines.
    assert (invoice.subtotal, invoice.total, invoice.amount_due) == (D("0.30"), D("0.30"), D("0.30"))


# -- R17 ----------------------------------------------------------------------------------------------------------


def test_r17_threshold_invoice_when_usage_after_discounts_exceeds_50_then_month_end_for_the_rest(desk: Desk) -> None:
    desk.session("wl-1", "2026-10-05T00:00:00Z")  # open: units are invoiced as each starts (R10)
    # A HEARTBEAT at 05:47 proves it running to 05:47 (R28): 347 minutes started: 347 x $0.144 = $49.968 -> $49.97
    not_yet = desk.close("2026-10-05T05:47:00Z")
    assert not_yet.issued == ()
    assert "$49.97 (to the settled-through time 2026-10-05T05:47:00.000000Z, R28) does not exceed $50.00" in (
        not_yet.explanation
    )

    # To 05:48: unit 347 (starting 05:47:00) takes the usage to 348 x $0.144 = $50.112 -> $50.11, over $50.00: the
    # cut is one microsecond after that unit's start, so the invoice holds it (R17), whenever the closer runs.
    [first] = desk.close("2026-10-05T05:48:00Z").issued
    assert (first.number, first.trigger, first.cadence) == (1, Trigger.THRESHOLD, Cadence.THRESHOLD_OR_MONTH_END)
    assert (format_micros(first.period_start), format_micros(first.period_end)) == (
        "2026-10-05T00:00:00.000000Z",
        "2026-10-05T05:47:00.000001Z",
    )
    assert (first.settled_through, first.grace) == (t("2026-10-05T05:48:00Z"), None)
    assert amounts(first) == [("COMPUTE", "R10/R11", "50.11")]
    assert (first.total, first.amount_due) == (D("50.11"), D("50.11"))
    assert [(s.workload_id, s.first, s.end) for s in first.sessions] == [("wl-1", 0, 348)]

    desk.stop("wl-1", "2026-10-05T06:00:00Z")
    assert desk.close("2026-10-31T23:59:59Z").issued == ()  # $1.73 is under $50.00
    [second] = desk.close("2026-11-01T00:00:00Z").issued  # the month ends: units 348..359 = 12 x $0.144 = $1.728
    assert (second.number, second.trigger) == (2, Trigger.MONTH_END)
    assert format_micros(second.period_start) == "2026-10-05T05:47:00.000001Z"
    assert format_micros(second.period_end) == "2026-11-01T00:00:00.000000Z"
    assert amounts(second) == [("COMPUTE", "R10/R11", "1.73")]
    assert [(s.first, s.end, s.reversal) for s in second.sessions] == [(348, 360, False)]


def test_r17_closing_twice_at_the_same_instant_issues_nothing_new(desk: Desk) -> None:
    desk.session("wl-1", "2026-10-05T09:00:00Z", "2026-10-05T10:40:00Z")  # 100 x $0.144 = $14.40
    [invoice] = desk.close("2026-11-01T00:00:00Z").issued
    assert invoice.total == D("14.40")
    size = desk.store.head("org/acme").size
    again = desk.close("2026-11-01T00:00:00Z", heartbeat=False)
    assert again.issued == () and "the month closes at 2026-12-01T00:00:00.000000Z" in again.explanation
    assert desk.store.head("org/acme").size == size


def test_r17_closing_in_the_future_is_refused(desk: Desk) -> None:
    desk.at("2026-10-05T00:00:00Z")
    with pytest.raises(InvalidInput, match="R17"):
        desk.engine.close("acme", t("2026-10-05T00:00:01Z"))


# -- R18 ----------------------------------------------------------------------------------------------------------


def test_r18_monthly_cadence_after_three_paid_invoices_and_back_to_r17_after_a_failure(desk: Desk) -> None:
    for day in (2, 3, 4):
        # 348 minutes of B200 FLEX: 348 x $0.144 = $50.112 -> $50.11 > $50.00 with the last unit (347 units:
        # $49.968 -> $49.97), so the cut (R17) holds the whole session and leaves nothing over
        desk.session(f"wl-{day}", f"2026-10-0{day}T00:00:00Z", f"2026-10-0{day}T05:48:00Z")
        [invoice] = desk.close(f"2026-10-0{day}T06:00:00Z").issued
        assert (invoice.trigger, invoice.cadence, invoice.total) == (
            Trigger.THRESHOLD,
            Cadence.THRESHOLD_OR_MONTH_END,
            D("50.11"),
        )
        desk.engine.record_payment("acme", invoice.number, "SUCCEEDED", f"ch_paid0{day}xyz")

    desk.session("wl-5", "2026-10-05T00:00:00Z", "2026-10-05T05:48:00Z")
    monthly = desk.close("2026-10-05T06:00:00Z")
    assert monthly.issued == () and monthly.cadence is Cadence.MONTHLY
    assert "R18: monthly cadence after 3 consecutive paid invoices" in monthly.explanation
    [fourth] = desk.close("2026-11-01T00:00:00Z").issued
    assert (fourth.number, fourth.trigger, fourth.cadence, fourth.total) == (
        4,
        Trigger.MONTH_END,
        Cadence.MONTHLY,
        D("50.11"),
    )

    desk.engine.record_payment("acme", 4, "FAILED", "ch_declined04x")  # the streak breaks: R17 again
    desk.session("wl-6", "2026-11-02T00:00:00Z", "2026-11-02T05:48:00Z")
    [fifth] = desk.close("2026-11-02T06:00:00Z").issued
    assert (fifth.number, fifth.trigger, fifth.cadence) == (5, Trigger.THRESHOLD, Cadence.THRESHOLD_OR_MONTH_END)


def test_r18_the_number_of_paid_invoices_is_a_per_org_setting(desk: Desk) -> None:
    settings(desk, monthly_after_paid_invoices=1)
    desk.session("wl-1", "2026-10-02T00:00:00Z", "2026-10-02T05:50:00Z")
    [first] = desk.close("2026-10-02T06:00:00Z").issued
    desk.engine.record_payment("acme", first.number, "SUCCEEDED", "ch_paid01xyz")
    desk.session("wl-2", "2026-10-03T00:00:00Z", "2026-10-03T05:50:00Z")
    assert desk.close("2026-10-03T06:00:00Z").cadence is Cadence.MONTHLY


# -- R16 and R20 ------------------------------------------------------------------------------------------------


def test_r16_credits_soonest_expiring_first_never_below_zero_carry_over_and_expired_unused(desk: Desk) -> None:
    engine = desk.engine  # the clock is at 2026-10-01T00:00Z: every grant is in force from then
    soon, _ = engine.grant_credit("acme", "5.00", "promo", t("2026-11-15T00:00:00Z"), "grant-soon")
    later, _ = engine.grant_credit("acme", "10.00", "education", t("2026-12-01T00:00:00Z"), "grant-later")
    never, _ = engine.grant_credit("acme", "20", "welcome", None, "grant-never")
    engine.grant_credit("acme", "7.00", "trial", t("2026-10-10T00:00:00Z"), "grant-lapsed")

    desk.session("wl-1", "2026-10-05T09:00:00Z", "2026-10-05T12:20:00Z")  # 200 x $0.144 = $28.80
    [october] = desk.close("2026-11-01T00:00:00Z").issued
    assert october.total == D("28.80")
    # Soonest expiry first ($5.00 then $10.00), then the grant without expiry; the lapsed trial is not used.
    assert [(c.credit_sequence, c.amount) for c in october.credits_applied] == [
        (soon.sequence, D("5.00")),
        (later.sequence, D("10.00")),
        (never.sequence, D("13.80")),
    ]
    assert october.amount_due == D("0.00")  # never below zero: $35.00 of credit for $28.80

    desk.session("wl-2", "2026-11-10T09:00:00Z", "2026-11-10T09:50:00Z")  # 50 x $0.144 = $7.20
    [november] = desk.close("2026-12-01T00:00:00Z").issued
    # The $6.20 left of the welcome grant carried over.
    assert [(c.credit_sequence, c.amount) for c in november.credits_applied] == [(never.sequence, D("6.20"))]
    assert november.amount_due == D("1.00")

    balances = {b.grant.request_id: b for b in desk.engine.books("acme").balances(t("2026-12-01T00:00:00Z"))}
    assert {k: (b.used, b.left, b.expired) for k, b in balances.items()} == {
        "grant-soon": (D("5.00"), D("0.00"), True),
        "grant-later": (D("10.00"), D("0.00"), True),
        "grant-never": (D("20.00"), D("0.00"), False),
        "grant-lapsed": (D("0"), D("7.00"), True),
    }
    with pytest.raises(BillingRefused, match="R16: invoice #1 needs no payment"):
        engine.record_payment("acme", 1, "SUCCEEDED", "ch_nothingdue1")


def test_r16_a_retried_grant_is_appended_once_and_bad_grants_are_refused(desk: Desk) -> None:
    first, duplicate = desk.engine.grant_credit("acme", "5.00", "promo", None, "req-1")
    again, duplicate_again = desk.engine.grant_credit("acme", "5.00", "promo", None, "req-1")
    assert (duplicate, duplicate_again, again.sequence) == (False, True, first.sequence)
    with pytest.raises(BillingRefused, match="R16: request 'req-1' already granted"):
        desk.engine.grant_credit("acme", "6.00", "promo", None, "req-1")
    with pytest.raises(InvalidInput) as err:
        desk.engine.grant_credit("acme", "5.001", "", t("2026-09-01T00:00:00Z"), "req-2")
    assert [v.field for v in err.value.violations] == ["amount", "reason", "expire_time"]


def test_r20_discount_applies_to_the_usage_subtotal_before_credits(desk: Desk) -> None:
    settings(desk, discount_percent="10")
    desk.engine.grant_credit("acme", "20.00", "welcome", None, "grant-1")
    desk.session("wl-1", "2026-10-05T09:00:00Z", "2026-10-05T12:20:00Z")  # $28.80
    [invoice] = desk.close("2026-11-01T00:00:00Z").issued
    assert amounts(invoice) == [("COMPUTE", "R10/R11", "28.80"), ("DISCOUNT", "R20", "-2.88")]
    assert (invoice.subtotal, invoice.discount, invoice.total) == (D("28.80"), D("2.88"), D("25.92"))
    # $25.92 - $20.00 of credit; credits before the discount would have left ($28.80 - $20.00) x 0.9 = $7.92.
    assert (invoice.credits_total, invoice.amount_due) == (D("20.00"), D("5.92"))


def test_r20_r21_the_discount_line_rounds_half_up(desk: Desk) -> None:
    settings(desk, granularity="PER_SECOND", discount_percent="12.5")
    desk.session("wl-1", "2026-10-05T09:00:00Z", "2026-10-05T09:06:57Z")  # 417 s x $0.0024 = $1.0008 -> $1.00
    [invoice] = desk.close("2026-11-01T00:00:00Z").issued
    assert amounts(invoice) == [("COMPUTE", "R10/R11", "1.00"), ("DISCOUNT", "R20", "-0.13")]  # 12.5% = $0.125
    assert invoice.total == D("0.87")


def test_r20_r17_the_threshold_compares_usage_after_the_discount(desk: Desk) -> None:
    settings(desk, discount_percent="10")
    desk.session("wl-1", "2026-10-05T00:00:00Z", "2026-10-05T06:30:00Z")  # 390 x $0.144 = $56.16; -10% = $50.54
    # Before the discount the usage passes $50.00 at unit 347; after it, not until unit 385 (starting 06:25):
    # 385 units: $55.44 - $5.54 = $49.90; 386 units: $55.584 -> $55.58, - $5.558 -> $5.56 = $50.02 > $50.00.
    [invoice] = desk.close("2026-10-05T07:00:00Z").issued
    assert format_micros(invoice.period_end) == "2026-10-05T06:25:00.000001Z"
    assert (invoice.subtotal, invoice.discount, invoice.usage_after_discount) == (D("55.58"), D("5.56"), D("50.02"))
    assert [(s.first, s.end) for s in invoice.sessions] == [(0, 386)]


# -- R22 and R23 ------------------------------------------------------------------------------------------------


def test_r22_late_usage_goes_on_the_next_invoice_marked_late_with_its_period(desk: Desk) -> None:
    # 348 x $0.144 = $50.112 -> $50.11: the threshold cut (R17) after unit 347 (05:47) holds the whole session
    desk.session("wl-1", "2026-10-02T00:00:00Z", "2026-10-02T05:48:00Z")
    [first] = desk.close("2026-10-02T06:00:00Z").issued
    assert format_micros(first.period_end) == "2026-10-02T05:47:00.000001Z"
    issued = desk.entry_bytes()

    desk.at("2026-10-02T07:00:00Z")  # late: a build and a volume sample from before 06:00 arrive now
    desk.session("build-1", "2026-10-02T01:00:00Z", "2026-10-02T01:10:00Z", workload_kind="BUILD", instance_type="A100")
    [sample] = desk.append(
        event(
            "acme",
            "wl-1",
            "STORAGE_SAMPLE",
            "2026-10-02T03:00:00Z",
            storage_kind="NETWORK_VOLUME",
            volume_id="vol-1",
            gigabytes="2000",
            interval_seconds=86400,
        )
    )
    [second] = desk.close("2026-11-01T00:00:00Z").issued
    # Build: 10 x $0.0456 = $0.456 -> $0.46. Volume (R14): 2000 GB for a day = 1,000 GB x $0.07 + 1,000 GB x
    # $0.05 per GB-month, x 86,400 / 2,592,000 = $2.3333 + $1.6667.
    assert amounts(second) == [
        ("COMPUTE", "R22", "0.46"),
        ("STORAGE", "R22/R14", "1.67"),
        ("STORAGE", "R22/R14", "2.33"),
    ]
    assert all(line.late for line in second.lines)
    build, beyond, first_tier = second.lines
    assert (format_micros(build.usage_start or 0), format_micros(build.usage_end or 0)) == (
        "2026-10-02T01:00:00.000000Z",
        "2026-10-02T01:10:00.000000Z",
    )
    assert (format_micros(first_tier.usage_start or 0), format_micros(first_tier.usage_end or 0)) == (
        "2026-10-01T03:00:00.000000Z",
        "2026-10-02T03:00:00.000000Z",
    )
    assert first_tier.unit_price == D("0.07") and beyond.unit_price == D("0.05")
    assert "R22: late usage from 2026-10-02T01:00:00.000000Z" in build.description
    assert second.total == D("4.46") and second.storage_sequences == (sample.sequence,)
    assert invoice_covering_storage(desk.invoices(), sample.sequence) == second
    assert desk.entry_bytes()[: len(issued)] == issued  # R22: the first invoice is untouched
    assert first.number == 1


def test_r22_r23_a_late_stop_of_an_invoiced_open_session_is_a_negative_late_line(desk: Desk) -> None:
    [up] = desk.session("wl-1", "2026-10-02T00:00:00Z")
    # A HEARTBEAT at 06:00 proves 360 minutes started (R28); the threshold cut (R17) is after unit 347 (05:47):
    # 348 x $0.144 = $50.112 -> $50.11.
    [first] = desk.close("2026-10-02T06:00:00Z").issued
    assert first.total == D("50.11") and [(s.first, s.end) for s in first.sessions] == [(0, 348)]
    # The control plane then goes quiet. An hour after October ends the grace fires (R17): units 348..359, started
    # before the last evidence (06:00), are invoiced: 12 x $0.144 = $1.728 -> $1.73.
    [second] = desk.close("2026-11-01T01:00:00Z", heartbeat=False).issued
    assert (second.trigger, second.total, [(s.first, s.end) for s in second.sessions]) == (
        Trigger.MONTH_END,
        D("1.73"),
        [(348, 360)],
    )
    assert second.grace == GraceFired(t("2026-11-01T01:00:00Z"), 3600)
    assert second.settled_through == t("2026-10-02T06:00:00Z")
    issued = desk.entry_bytes()

    desk.at("2026-11-01T01:10:00Z")
    desk.stop("wl-1", "2026-10-02T05:50:00Z")  # a lagging control plane: only 350 units were due
    # November had no usage; an hour after it ends the grace fires again, with the reversal only (R22/R23).
    [third] = desk.close("2026-12-01T01:00:00Z", heartbeat=False).issued
    [reversal] = third.lines
    assert (reversal.kind, reversal.rule, reversal.quantity, reversal.amount) == (
        LineKind.COMPUTE,
        "R22/R23",
        D("-10"),
        D("-1.44"),
    )
    assert reversal.late and reversal.reversal
    assert (format_micros(reversal.usage_start or 0), format_micros(reversal.usage_end or 0)) == (
        "2026-10-02T05:50:00.000000Z",
        "2026-10-02T06:00:00.000000Z",
    )
    assert [(s.first, s.end, s.reversal) for s in third.sessions] == [(350, 360, True)]
    assert (third.total, third.amount_due, third.balance_carried_forward) == (D("-1.44"), D("0.00"), D("-1.44"))
    assert desk.entry_bytes()[: len(issued)] == issued  # never edit an issued invoice

    invoices = desk.invoices()
    assert invoice_covering_unit(invoices, "wl-1", 347) == first
    assert invoice_covering_unit(invoices, "wl-1", 349) == second
    assert invoice_covering_unit(invoices, "wl-1", 355) is None  # taken back: no longer a billed unit
    assert invoice_covering_unit(invoices, "wl-1", 0, up_seq=up.sequence) == first

    desk.session("wl-2", "2026-12-10T09:00:00Z", "2026-12-10T09:50:00Z")  # 50 x $0.144 = $7.20
    [fourth] = desk.close("2027-01-01T00:00:00Z").issued
    assert amounts(fourth) == [("COMPUTE", "R10/R11", "7.20"), ("CARRIED_BALANCE", "R16/R23", "-1.44")]
    assert (fourth.carried_from_invoice, fourth.total, fourth.amount_due) == (3, D("5.76"), D("5.76"))
    assert_invoices_rederive(desk)


def test_r23_an_adjustment_lands_on_the_next_invoice_as_its_own_line_after_the_discount(desk: Desk) -> None:
    settings(desk, discount_percent="10")
    [up, _] = desk.session("wl-1", "2026-10-05T09:00:00Z", "2026-10-05T12:20:00Z")  # $28.80
    desk.at("2026-10-20T00:00:00Z")
    _, appended = desk.ledger.append_adjustment(
        "acme", "T-42", "-2.50", "cold start billed twice", [("org/acme", up.sequence)]
    )
    [invoice] = desk.close("2026-11-01T00:00:00Z").issued
    assert amounts(invoice) == [
        ("COMPUTE", "R10/R11", "28.80"),
        ("DISCOUNT", "R20", "-2.88"),
        ("ADJUSTMENT", "R23", "-2.50"),
    ]
    assert invoice.total == D("23.42")  # 28.80 - 2.88 - 2.50: the discount is on usage, not on corrections
    adjustment_line = invoice.lines[2]
    assert "ticket T-42" in adjustment_line.description and f"org/acme:{up.sequence}" in adjustment_line.description
    assert invoice.adjustment_sequences == (appended.sequence,)
    assert invoice_covering_adjustment(desk.invoices(), appended.sequence) == invoice
    assert invoices_of(desk.store, "acme") == desk.invoices()


def test_r22_issued_invoices_are_byte_identical_after_later_appends(db_url: str) -> None:
    desk = Desk(db_url, "2026-10-01T00:00:00Z")
    try:
        desk.engine.set_payment_method("acme", "pm_1NqLiJLkdIwHu7ix")
        desk.session("wl-1", "2026-10-02T00:00:00Z")
        [first] = desk.close("2026-10-02T06:00:00Z").issued
        issued = desk.entry_bytes()
        desk.engine.record_payment("acme", 1, "SUCCEEDED", "ch_3NqLiJLkdIwHu7ix")
        desk.at("2026-10-03T00:00:00Z")
        desk.stop("wl-1", "2026-10-02T05:00:00Z")
        desk.session("wl-2", "2026-10-02T03:00:00Z", "2026-10-02T03:30:00Z")
        desk.engine.evaluate_account("acme")
        [second] = desk.close("2026-11-01T00:00:00Z").issued
        assert desk.entry_bytes()[: len(issued)] == issued
        assert desk.invoices()[0] == first
        # The first invoice was cut after unit 347 (R17: 348 x $0.144 = $50.11): 48 minutes taken back
        # (05:00-05:48, 48 x $0.144 = $6.912 -> $6.91) and 30 late minutes charged (03:00-03:30, $4.32).
        assert amounts(second) == [("COMPUTE", "R22", "4.32"), ("COMPUTE", "R22/R23", "-6.91")]
    finally:
        desk.close_store()


# -- R15 ------------------------------------------------------------------------------------------------------------


def spend_limit_org(desk: Desk) -> None:
    """Limit $10.00/hour; wl-a B200 FLEX ($0.144/min) 10:00-12:00; wl-b H100 PRO FLEX ($0.0696/min) 10:30-11:00.

    Hourly spend at t counts units starting in (t - 60 min, t]. At 10:55: 56 x 0.144 + 26 x 0.0696 = $9.8736;
    at 10:56: 57 x 0.144 + 27 x 0.0696 = $10.0872 > $10.00. wl-a then holds at 60 x 0.144 = $8.64 while wl-b's
    units leave the window from 11:30; at 11:39: 8.64 + 20 x 0.0696 = $10.032; at 11:40: 8.64 + 19 x 0.0696 = $9.9624.
    """
    settings(desk, spend_limit_per_hour="10.00")
    desk.engine.set_payment_method("acme", "pm_1NqLiJLkdIwHu7ix")  # keep R19 out of the way


def spend_flips(desk: Desk) -> list[tuple[StateChangeType, str, str]]:
    return [
        (c.change, format_micros(c.at), c.figures["hourly_spend"])
        for c in desk.engine.books("acme").status.changes
        if c.rule == "R15"
    ]


EXPECTED_FLIPS = [
    (StateChangeType.SPEND_LIMIT_EXCEEDED, "2026-10-05T10:56:00.000000Z", "10.0872"),
    (StateChangeType.SPEND_LIMIT_CLEARED, "2026-10-05T11:40:00.000000Z", "9.9624"),
]


def test_r15_flips_on_and_off_at_the_instants_the_hourly_spend_crosses_the_limit(desk: Desk) -> None:
    spend_limit_org(desk)
    desk.session("wl-a", "2026-10-05T10:00:00Z", "2026-10-05T12:00:00Z")
    desk.session("wl-b", "2026-10-05T10:30:00Z", "2026-10-05T11:00:00Z", instance_type="H100 PRO")
    desk.at("2026-10-05T12:10:00Z")
    rating = desk.engine.rating("acme", desk.clock.now)
    assert hourly_spend(rating, t("2026-10-05T10:55:00Z")) == D("9.8736")
    assert hourly_spend(rating, t("2026-10-05T10:56:00Z")) == D("10.0872")
    assert hourly_spend(rating, t("2026-10-05T11:39:59Z")) == D("10.0320")
    changes = desk.engine.evaluate_account("acme")
    assert [c.change for c in changes] == [StateChangeType.SPEND_LIMIT_EXCEEDED, StateChangeType.SPEND_LIMIT_CLEARED]
    assert spend_flips(desk) == EXPECTED_FLIPS
    assert (
        "R15: hourly spend $10.0872" in changes[0].explanation and "exceeds the limit $10.00" in changes[0].explanation
    )
    assert desk.engine.evaluate_account("acme") == []  # nothing new at the same instant


def test_r15_evaluated_as_time_passes_finds_the_same_instants(desk: Desk) -> None:
    # Open sessions, proven running by a HEARTBEAT at each look (R28): the flips land at the same instants as when
    # the whole day is rated at once.
    spend_limit_org(desk)
    desk.at("2026-10-05T10:00:00Z")
    desk.heartbeat("2026-10-05T10:00:00Z")  # R28: the control plane is live
    desk.session("wl-a", "2026-10-05T10:00:00Z")
    desk.at("2026-10-05T10:30:00Z")
    desk.heartbeat("2026-10-05T10:30:00Z")  # R28: the control plane is live
    desk.session("wl-b", "2026-10-05T10:30:00Z", instance_type="H100 PRO")
    desk.at("2026-10-05T10:40:00Z")
    desk.heartbeat("2026-10-05T10:40:00Z")  # R28: the control plane is live
    assert desk.engine.evaluate_account("acme") == []
    desk.at("2026-10-05T10:58:00Z")
    desk.heartbeat("2026-10-05T10:58:00Z")  # R28: the control plane is live
    assert [c.change for c in desk.engine.evaluate_account("acme")] == [StateChangeType.SPEND_LIMIT_EXCEEDED]
    assert desk.engine.books("acme").status.state is AccountState.SPEND_LIMIT_EXCEEDED
    desk.at("2026-10-05T11:05:00Z")
    desk.heartbeat("2026-10-05T11:05:00Z")  # R28: the control plane is live
    desk.stop("wl-b", "2026-10-05T11:00:00Z", instance_type="H100 PRO")
    assert desk.engine.evaluate_account("acme") == []
    desk.at("2026-10-05T11:45:00Z")
    desk.heartbeat("2026-10-05T11:45:00Z")  # R28: the control plane is live
    assert [c.change for c in desk.engine.evaluate_account("acme")] == [StateChangeType.SPEND_LIMIT_CLEARED]
    desk.at("2026-10-05T12:05:00Z")
    desk.heartbeat("2026-10-05T12:05:00Z")  # R28: the control plane is live
    desk.stop("wl-a", "2026-10-05T12:00:00Z")
    assert desk.engine.evaluate_account("acme") == []
    assert spend_flips(desk) == EXPECTED_FLIPS


def test_r15_a_raised_limit_clears_at_the_instant_it_takes_effect(desk: Desk) -> None:
    spend_limit_org(desk)
    desk.session("wl-a", "2026-10-05T10:00:00Z", "2026-10-05T12:00:00Z")
    desk.session("wl-b", "2026-10-05T10:30:00Z", "2026-10-05T11:00:00Z", instance_type="H100 PRO")
    desk.ledger.set_account("acme", {"effective_from": "2026-10-05T11:15:00Z", "spend_limit_per_hour": "20"})
    desk.at("2026-10-05T12:10:00Z")
    desk.engine.evaluate_account("acme")
    assert spend_flips(desk) == [
        EXPECTED_FLIPS[0],
        (StateChangeType.SPEND_LIMIT_CLEARED, "2026-10-05T11:15:00.000000Z", "10.728"),  # 8.64 + 30 x 0.0696
    ]


# -- R19 ------------------------------------------------------------------------------------------------------------


def test_r19_deactivated_when_credits_no_longer_cover_usage_without_a_payment_method(desk: Desk) -> None:
    engine = desk.engine
    desk.at("2026-10-05T09:00:00Z")
    engine.grant_credit("acme", "5.00", "free credits for a new workspace", None, "welcome")
    desk.session("wl-1", "2026-10-05T09:00:00Z", instance_type="A100")  # open: $0.0456 a minute
    desk.heartbeat("2026-10-05T10:49:00Z")  # R28: 109 minutes proven: $4.9704 -> $4.97, covered by $5.00
    desk.at("2026-10-05T10:49:00Z")
    assert engine.evaluate_account("acme") == []
    desk.heartbeat("2026-10-05T10:50:00Z")  # 110 minutes: $5.016 -> $5.02
    desk.at("2026-10-05T10:50:00Z")
    [deactivated] = engine.evaluate_account("acme")
    assert (
        deactivated.change is StateChangeType.DEACTIVATED
        and format_micros(deactivated.at) == "2026-10-05T10:50:00.000000Z"
    )
    assert deactivated.figures["credit_left"] == "5.00" and deactivated.figures["open_period_total"] == "5.02"
    assert "R19: no payment method on file" in deactivated.explanation
    assert engine.books("acme").status.state is AccountState.DEACTIVATED

    engine.set_payment_method("acme", "pm_1NqLiJLkdIwHu7ix")  # adding a method reactivates
    status = engine.books("acme").status
    assert [c.change for c in status.changes[-2:]] == [
        StateChangeType.PAYMENT_METHOD_SET,
        StateChangeType.REACTIVATED,
    ]
    assert status.state is AccountState.ACTIVE and status.payment_method == "pm_1NqLiJLkdIwHu7ix"
    assert engine.set_payment_method("acme", "pm_1NqLiJLkdIwHu7ix") is None  # already on file: nothing appended

    engine.clear_payment_method("acme")
    assert engine.books("acme").status.state is AccountState.DEACTIVATED
    engine.grant_credit("acme", "10.00", "goodwill", None, "goodwill")  # credits cover usage again
    assert engine.books("acme").status.changes[-1].change is StateChangeType.REACTIVATED


@pytest.mark.parametrize(
    "reference",
    ["4242424242424242", "4242 4242 4242 4242", "4242-4242-4242-4242", "pm_4242424242424242", "378282246310005"],
)
def test_r19_card_numbers_are_refused_and_never_stored(desk: Desk, reference: str) -> None:
    with pytest.raises(InvalidInput) as err:
        desk.engine.set_payment_method("acme", reference)
    [violation] = err.value.violations
    assert violation.field == "reference" and "R19: this looks like a card or account number" in violation.description
    assert reference not in violation.description
    assert desk.engine.books("acme").status.changes == ()


@pytest.mark.parametrize("reference", ["", "pm_", "card 1234", "pm_abc def", "x" * 300])
def test_r19_a_payment_method_must_be_an_opaque_processor_token(desk: Desk, reference: str) -> None:
    with pytest.raises(InvalidInput, match="R19: must be an opaque processor reference"):
        desk.engine.set_payment_method("acme", reference)


def test_r18_a_payment_reference_is_recorded_once_and_an_invoice_is_paid_once(desk: Desk) -> None:
    desk.session("wl-1", "2026-10-02T00:00:00Z", "2026-10-02T05:50:00Z")
    desk.close("2026-10-02T06:00:00Z")  # R17: cut after unit 347 (05:47): 348 x $0.144 = $50.112 -> $50.11
    failed, _ = desk.engine.record_payment("acme", 1, "failed", "ch_declined01")
    paid, duplicate = desk.engine.record_payment("acme", 1, "SUCCEEDED", "ch_paid000001")
    again, duplicate_again = desk.engine.record_payment("acme", 1, "SUCCEEDED", "ch_paid000001")
    assert (duplicate, duplicate_again, again.sequence, paid.amount) == (False, True, paid.sequence, D("50.11"))
    with pytest.raises(BillingRefused, match="R18: invoice #1 is already paid"):
        desk.engine.record_payment("acme", 1, "SUCCEEDED", "ch_paid000002")
    with pytest.raises(BillingRefused, match="already recorded as FAILED"):
        desk.engine.record_payment("acme", 1, "SUCCEEDED", "ch_declined01")
    assert failed.sequence < paid.sequence
