"""R11 and R12 through a real server on both stores: rates checked at each event's occurred_at, and no price
version taking effect before an issued invoice's cut."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf.timestamp_pb2 import Timestamp
from usageledger.v1 import account_pb2 as apb
from usageledger.v1 import account_pb2_grpc as apb_grpc
from usageledger.v1 import billing_pb2 as bpb
from usageledger.v1 import billing_pb2_grpc as bpb_grpc
from usageledger.v1 import pricing_pb2 as ppb
from usageledger.v1 import pricing_pb2_grpc as ppb_grpc
from usageledger.v1 import usage_pb2 as upb
from usageledger.v1 import usage_pb2_grpc as upb_grpc

from client.ledger_client import LedgerClient
from ledger.errors import NotFound
from ledger.export import export_lines, import_export
from ledger.intake import Ledger, derive_index
from ledger.issued_cuts import IssuedCut, PriceVersionBeforeCut
from ledger.log.entry import SYSTEM_LOG, EntryKind, canonical_body, org_log_id
from ledger.ports import NewEntry
from ledger.pricebook import InstanceRate, PriceBook, PriceHistory, default_price_book
from ledger.timeutil import parse_rfc3339_micros
from server.app import RunningServer
from storage.sql import SqlStore
from tests.billing_support import Desk, t
from tests.conftest import EventFactory
from tests.test_cli import ledgerctl
from tests.test_server import details
from wire.convert import micros_to_timestamp, timestamp_to_micros


def at(text: str) -> Timestamp:
    return micros_to_timestamp(parse_rfc3339_micros(text))


def set_price_book(client: LedgerClient, effective: str, rates: dict[str, tuple[str, str]]) -> ppb.PriceBook:
    request = ppb.SetPriceBookRequest(
        effective_time=at(effective),
        rates=[
            ppb.InstanceRate(instance_type=n, flex_per_second=f, active_per_second=a) for n, (f, a) in rates.items()
        ],
        note="test",
    )
    return client.call(ppb_grpc.PricingServiceStub(client.channel).SetPriceBook, request).price_book


def query_usage(client: LedgerClient, org: str, start: str, end: str) -> upb.QueryUsageResponse:
    request = upb.QueryUsageRequest(
        org_id=org, start_time=at(start), end_time=at(end), group_by=[upb.GROUP_BY_INSTANCE_TYPE]
    )
    return client.call(upb_grpc.UsageServiceStub(client.channel).QueryUsage, request)


def account_state(client: LedgerClient, org: str) -> apb.GetAccountStateResponse:
    return client.call(
        apb_grpc.AccountServiceStub(client.channel).GetAccountState, apb.GetAccountStateRequest(org_id=org)
    )


# R11 -----------------------------------------------------------------------------------------------------------


def test_r11_an_event_before_its_types_first_rate_is_refused_and_the_org_stays_readable(
    client: LedgerClient, make_event: EventFactory
) -> None:
    # The reproduction of issue #22: a price-book update adds CPU-8 from 2026-10-05T12:00Z, then an event of that
    # type at 09:00, before any version prices it. It used to be appended, and every later read of the org failed
    # NOT_FOUND ("R11: instance type 'CPU-8' is not in price book v0") for good.
    set_price_book(client, "2026-10-05T12:00:00Z", {"CPU-8": ("0.00002", "0.00001")})
    client.append_events([make_event(workload_id="wl-gpu", occurred_at="2026-10-05T09:00:00Z")])
    early = make_event(workload_id="wl-cpu", instance_type="CPU-8", occurred_at="2026-10-05T09:00:00Z")
    with pytest.raises(grpc.RpcError) as err:
        client.append_events([make_event(workload_id="wl-gpu2", occurred_at="2026-10-05T09:00:00Z"), early])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    infos, violations = details(err.value)
    # ErrorInfo names the first violation's kind and every bad field (docs/errors.md).
    assert infos[0].reason == "INVALID_INSTANCE_TYPE"
    assert infos[0].metadata["fields"] == ",".join(field for field, _ in violations)
    assert violations == [
        (
            "events[1].instance_type",
            "R11: 'CPU-8' has no rate in the price book in force at its occurred_at 2026-10-05T09:00:00.000000Z "
            "(v0); its first rate takes effect 2026-10-05T12:00:00.000000Z; nothing was appended",
        )
    ]
    assert client.head("org/acme").size == 1  # the whole batch refused: the valid event in it too

    # The org stays readable, and the type is accepted from its first rate on and rated at it (R11):
    # UP 12:00, STOP 12:02:00.5 is ceil(120.5 / 60) = 3 minutes (R10) x 60 x $0.00002 = $0.0036.
    client.append_events(
        [
            make_event(workload_id="wl-cpu", instance_type="CPU-8", occurred_at="2026-10-05T12:00:00Z"),
            make_event(
                workload_id="wl-cpu",
                instance_type="CPU-8",
                type="WORKLOAD_STOPPED",
                stop_reason="COMPLETED",
                occurred_at="2026-10-05T12:02:00.500000Z",
            ),
        ]
    )
    usage = query_usage(client, "acme", "2026-10-05T11:00:00Z", "2026-10-05T13:00:00Z")
    cpu = [row for row in usage.rows if row.instance_type == "CPU-8"]
    assert [(row.quantity, Decimal(row.amount)) for row in cpu] == [(3, Decimal("0.0036"))]
    assert account_state(client, "acme").org_id == "acme"


def test_r11_the_type_is_checked_on_the_fast_and_the_full_validation_paths_alike(
    client: LedgerClient, make_event: EventFactory
) -> None:
    # A batch whose other event is malformed goes through the full checks: every violation is still listed,
    # R11's at-occurred_at refusal among them.
    set_price_book(client, "2026-10-05T12:00:00Z", {"CPU-8": ("0.00002", "0.00001")})
    batch = [
        make_event(instance_type="CPU-8", occurred_at="2026-10-05T11:59:59.999999Z"),
        make_event(event_id=""),
    ]
    with pytest.raises(grpc.RpcError) as err:
        client.append_events(batch)
    _, violations = details(err.value)
    assert [field for field, _ in violations] == ["events[0].instance_type", "events[1].event_id"]
    assert "R11" in violations[0][1]
    with pytest.raises(grpc.RpcError) as missing:
        client.head("org/acme")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    # One microsecond later the version is in force: accepted.
    [result] = client.append_events([make_event(instance_type="CPU-8", occurred_at="2026-10-05T12:00:00Z")])
    assert (result.log_id, result.sequence) == ("org/acme", 0)


def test_r11_prices_at_follows_the_version_in_force() -> None:
    cpu = InstanceRate(Decimal("0.00002"), Decimal("0.00001"))
    noon = parse_rfc3339_micros("2026-10-05T12:00:00Z")
    default = default_price_book()
    with_cpu = PriceBook(noon, {**default.rates, "CPU-8": cpu}, version=3)
    history = PriceHistory([default, with_cpu])
    assert not history.prices_at("CPU-8", noon - 1)
    assert history.prices_at("CPU-8", noon)
    assert history.prices_at("A100", noon - 1) and history.prices_at("A100", noon)
    assert not history.prices_at("A100", -1)  # before the default book (in force from the epoch)
    assert history.first_priced("CPU-8") == noon and history.first_priced("TPU") is None
    with pytest.raises(NotFound, match="R11"):
        history.at(noon - 1).rate("CPU-8")


# R12 -----------------------------------------------------------------------------------------------------------

SEPTEMBER_END = "2026-10-01T00:00:00Z"


def september_invoice(client: LedgerClient, make_event: EventFactory, org: str) -> bpb.Invoice:
    """An org's month-end invoice of September, cut at its end: an A100 FLEX session 23:00 to 23:30 on the 30th,
    30 minutes x 60 x $0.00076 = $1.368, line $1.37 (R10, R11, R17, R21)."""
    up = make_event(org_id=org, occurred_at="2026-09-30T23:00:00Z")
    stop = make_event(
        org_id=org, type="WORKLOAD_STOPPED", stop_reason="SCALED_DOWN", occurred_at="2026-09-30T23:30:00Z"
    )
    client.append_events([up, stop])
    billing = bpb_grpc.BillingServiceStub(client.channel)
    # Nothing shows the log settled through September's end (R28), so its month-end invoice is issued by the grace:
    # the wall clock one hour past the cut (R17).
    grace_passed = "2026-10-01T01:00:01Z"
    client.call(billing.CloseBillingPeriod, bpb.CloseBillingPeriodRequest(org_id=org, close_time=at(grace_passed)))
    [invoice] = client.call(billing.ListInvoices, bpb.ListInvoicesRequest(org_id=org)).invoices
    assert timestamp_to_micros(invoice.period_end_time) == parse_rfc3339_micros(SEPTEMBER_END)
    assert invoice.total == "1.37"
    return invoice


def test_r12_a_price_version_before_an_issued_invoices_cut_is_refused_and_nothing_is_appended(
    client: LedgerClient, server: RunningServer, make_event: EventFactory, tmp_path: Path
) -> None:
    invoice = september_invoice(client, make_event, "acme")
    system_size = client.head(SYSTEM_LOG).size
    backdated = {"A100": ("0.001", "0.0009")}
    with pytest.raises(grpc.RpcError) as err:
        set_price_book(client, "2026-09-30T23:15:00Z", backdated)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    infos, _ = details(err.value)
    assert infos[0].reason == "PRICE_VERSION_BEFORE_INVOICE_CUT"
    message = err.value.details() or ""
    assert "R12" in message and "R23" in message and "adjustment" in message
    assert f"entry org/acme:{invoice.sequence}) is cut at 2026-10-01T00:00:00.000000Z" in message
    assert client.head(SYSTEM_LOG).size == system_size
    # ledgerctl: exit 1 (the ledger said no), the reason on stderr, and still nothing appended.
    update = tmp_path / "prices.json"
    update.write_text(
        json.dumps(
            {
                "effective_from": "2026-09-30T23:15:00Z",
                "rates": {"A100": {"flex_per_second": "0.001", "active_per_second": "0.0009"}},
            }
        )
    )
    refused = ledgerctl("prices", "set", str(update), target=f"127.0.0.1:{server.port}")
    assert refused.returncode == 1
    assert "FAILED_PRECONDITION" in refused.stderr and "R12" in refused.stderr
    assert client.head(SYSTEM_LOG).size == system_size
    # The lookup still says what was invoiced: the unit at 23:15 is at v0's $0.00076/s (R12).
    pricing = ppb_grpc.PricingServiceStub(client.channel)
    book = client.call(pricing.GetPriceBook, ppb.GetPriceBookRequest(at_time=at("2026-09-30T23:15:00Z"))).price_book
    assert book.version == 0
    assert [r.flex_per_second for r in book.rates if r.instance_type == "A100"] == ["0.00076"]
    # One microsecond before the cut is still refused; at the cut itself nothing invoiced changes (the invoice
    # holds only usage that starts before it, R17), so it is allowed.
    with pytest.raises(grpc.RpcError) as just_before:
        set_price_book(client, "2026-09-30T23:59:59.999999Z", backdated)
    assert just_before.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    accepted = set_price_book(client, SEPTEMBER_END, backdated)
    assert timestamp_to_micros(accepted.effective_time) == parse_rfc3339_micros(SEPTEMBER_END)
    assert client.head(SYSTEM_LOG).size == system_size + 1


def test_r12_any_orgs_issued_invoice_holds_the_guard_for_every_price_version(
    client: LedgerClient, make_event: EventFactory
) -> None:
    # Price books are ledger-wide: beta has no invoice, but acme's September cut still forbids a version in
    # September, which would change what acme's invoice says was charged.
    client.append_events([make_event(org_id="beta", occurred_at="2026-09-15T10:00:00Z")])
    set_price_book(client, "2026-09-20T00:00:00Z", {"L4": ("0.0002", "0.00014")})  # no invoice yet: allowed
    september_invoice(client, make_event, "acme")
    with pytest.raises(grpc.RpcError) as err:
        set_price_book(client, "2026-09-25T00:00:00Z", {"L4": ("0.0003", "0.0002")})
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "org 'acme'" in (err.value.details() or "")


def month_end_invoices(url: str) -> Desk:
    """acme's August invoice (cut 2026-09-01) and beta's September invoice (cut 2026-10-01), on one ledger."""
    desk = Desk(url, "2026-08-31T00:00:00Z")
    desk.session("wl-a", "2026-08-31T10:00:00Z", "2026-08-31T11:00:00Z")
    desk.close("2026-09-01T00:00:00Z")
    desk.session("wl-b", "2026-09-30T10:00:00Z", "2026-09-30T11:00:00Z", org="beta")
    desk.close("2026-10-01T00:00:00Z", org="beta")
    assert [len(desk.invoices(org)) for org in ("acme", "beta")] == [1, 1]
    return desk


def test_r12_the_latest_cut_is_kept_with_each_invoice_and_rebuilt_by_the_migration(db_url: str) -> None:
    desk = month_end_invoices(db_url)
    [beta_invoice] = desk.invoices("beta")
    expected = IssuedCut("org/beta", t("2026-10-01T00:00:00Z"), beta_invoice.sequence)
    assert desk.store.latest_invoice_cut() == expected
    # A database from before migration 0011: the table is filled from the INVOICE entries on open.
    with desk.store.writer.begin() as conn:
        conn.execute(sa.text("DROP TABLE invoice_cuts"))
        # ...and from before the migrations after it (0012: the rollups' evidence of running, R28).
        conn.execute(sa.text("DROP TABLE rollup_evidence"))
        conn.execute(sa.text("ALTER TABLE rollup_cursors DROP COLUMN heartbeat_at"))
        conn.execute(sa.text("ALTER TABLE rollup_cursors DROP COLUMN latest_event_at"))
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0010'"))
    desk.close_store()
    reopened = SqlStore(db_url)
    try:
        assert reopened.latest_invoice_cut() == expected
        with pytest.raises(PriceVersionBeforeCut, match="R12"):
            Ledger(reopened).set_price_book(
                {
                    "effective_from": "2026-09-30T10:30:00Z",
                    "rates": {"B200": {"flex_per_second": "0.003", "active_per_second": "0.002"}},
                }
            )
    finally:
        reopened.close()


def test_r12_an_imported_ledger_keeps_its_guard(tmp_path: Path, db_url: str) -> None:
    desk = month_end_invoices(f"sqlite:///{tmp_path / 'source.db'}")
    path = tmp_path / "export.jsonl"
    path.write_text("".join(line + "\n" for line in export_lines(desk.store, [SYSTEM_LOG, "org/acme", "org/beta"])))
    expected = desk.store.latest_invoice_cut()
    desk.close_store()
    target = SqlStore(db_url)
    try:
        import_export(target, path)
        assert target.latest_invoice_cut() == expected
    finally:
        target.close()


def test_r12_a_price_version_waits_for_an_invoice_being_appended_and_then_sees_its_cut(db_url: str) -> None:
    """The guard's read and the price-book append are one step against invoice appends: a version added while an
    invoice's transaction is open waits for it (PostgreSQL: SHARE lock on invoice_cuts; SQLite: the one writer)
    and is then refused by that invoice's cut. Read-then-append without it would miss the uncommitted cut."""
    store = SqlStore(db_url)
    ledger = Ledger(store)
    body = {
        "idempotency_key": "invoice-1",
        "org_id": "acme",
        "period": {"start": "2026-09-01T00:00:00.000000Z", "end": "2026-10-01T00:00:00.000000Z"},
    }
    invoice = NewEntry(
        org_log_id("acme"), EntryKind.INVOICE, canonical_body(body), derive_index(EntryKind.INVOICE, body)
    )
    outcome: list[BaseException | None] = []

    def backdate() -> None:
        try:
            ledger.set_price_book(
                {
                    "effective_from": "2026-09-15T00:00:00Z",
                    "rates": {"A100": {"flex_per_second": "0.001", "active_per_second": "0.0009"}},
                }
            )
            outcome.append(None)
        except BaseException as err:  # handed to the test thread
            outcome.append(err)

    try:
        with store.writer.begin() as conn:
            store._append(conn, [invoice])  # an invoice append, held open before its commit
            racer = threading.Thread(target=backdate)
            racer.start()
            racer.join(timeout=0.5)
            assert racer.is_alive(), "the price version did not wait for the open invoice transaction"
        racer.join(timeout=30)
        assert len(outcome) == 1 and isinstance(outcome[0], PriceVersionBeforeCut), outcome
        assert store.latest_invoice_cut() == IssuedCut("org/acme", t("2026-10-01T00:00:00Z"), 0)
        assert [b.version for b in ledger.price_history().versions] == [0]
    finally:
        store.close()
