"""`ledgerctl account|credits|invoices|payments` against a real server on an ephemeral port: output, JSON and exit
codes (0 done, 1 refused, 2 usage error, 3 unreachable). Commands run in-process (typer's runner) for speed."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from usageledger.v1 import account_pb2 as apb
from usageledger.v1 import account_pb2_grpc as apb_grpc

from client.cli import app
from client.ledger_client import LedgerClient
from server.app import RunningServer, start_server
from tests.billing_support import event, t
from tests.cli_support import LedgerctlRunner
from tests.conftest import FixedClock
from wire.convert import micros_to_timestamp

runner = LedgerctlRunner(env={"COLUMNS": "220", "LEDGER_TARGET": None})


@pytest.fixture
def cli_clock() -> FixedClock:
    return FixedClock(t("2026-10-01T00:00:00Z"))


@pytest.fixture
def target(sqlite_url: str, cli_clock: FixedClock) -> Iterator[str]:
    running: RunningServer = start_server(sqlite_url, "127.0.0.1:0", clock=cli_clock)  # no closer: on demand only
    yield f"127.0.0.1:{running.port}"
    running.stop(grace=None)


def ledgerctl(target: str, *args: str) -> Any:
    return runner.invoke(app, [*args, "--target", target])


def as_json(result: Any) -> Any:
    return json.loads(result.stdout)


def test_account_set_and_show_settings_r10_r15_r18_r20(target: str) -> None:
    result = ledgerctl(
        target,
        "account",
        "set",
        "--org",
        "acme",
        "--granularity",
        "per_second",
        "--discount-percent",
        "10",
        "--spend-limit",
        "25",
        "--monthly-after",
        "2",
        "--effective-from",
        "2026-01-01T00:00:00Z",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert as_json(result)["settings"] == {
        "granularity": "PER_SECOND",
        "discount_percent": "10",
        "spend_limit_per_hour": "25.00",
        "monthly_after_paid_invoices": 2,
    }
    with grpc.insecure_channel(target) as channel:
        settings = (
            apb_grpc.AccountServiceStub(channel)
            .GetAccountSettings(
                apb.GetAccountSettingsRequest(org_id="acme", at_time=micros_to_timestamp(t("2025-12-31T23:59:59Z")))
            )
            .settings
        )
    assert (settings.granularity, settings.spend_limit_per_hour) == (apb.GRANULARITY_PER_MINUTE, "80.00")  # defaults

    text = ledgerctl(target, "account", "set", "--org", "acme", "--spend-limit", "30")
    assert (
        text.exit_code == 0 and "spend limit $30.00/hour (R15)" in text.stdout and "discount 10% (R20)" in text.stdout
    )

    shown = as_json(ledgerctl(target, "account", "show", "--org", "acme", "--json"))
    assert (shown["state"], shown["spend_limit_per_hour"], shown["discount_percent"]) == ("ACTIVE", "30.00", "10")
    assert (shown["payment_method_on_file"], shown["credit_left"], shown["cadence"]) == (
        False,
        "0.00",
        "THRESHOLD_OR_MONTH_END",
    )


def test_account_set_usage_errors_exit_2_and_refusals_exit_1(target: str) -> None:
    assert ledgerctl(target, "account", "set", "--org", "acme").exit_code == 2
    assert ledgerctl(target, "account", "set", "--org", "acme", "--granularity", "PER_HOUR").exit_code == 2
    bad_time = ledgerctl(target, "account", "set", "--org", "acme", "--spend-limit", "5", "--effective-from", "soon")
    assert bad_time.exit_code == 2
    refused = ledgerctl(target, "account", "set", "--org", "acme", "--discount-percent", "150", "--json")
    assert refused.exit_code == 1
    assert as_json(refused)["violations"][0]["field"] == "discount_percent"
    assert "R20" in as_json(refused)["violations"][0]["description"]


def test_payment_method_is_an_opaque_reference_r19(target: str) -> None:
    card = ledgerctl(target, "account", "payment-method", "set", "--org", "acme", "--reference", "4242424242424242")
    assert card.exit_code == 1 and "R19" in card.stderr and "card" in card.stderr
    added = ledgerctl(
        target, "account", "payment-method", "set", "--org", "acme", "--reference", "pm_1NqLiJLkdIwHu7ix", "--json"
    )
    assert added.exit_code == 0
    assert as_json(added)["changed"] and as_json(added)["change"]["change"] == "PAYMENT_METHOD_SET"
    shown = ledgerctl(target, "account", "show", "--org", "acme")
    assert "yes (opaque reference on file, R19)" in shown.stdout
    cleared = ledgerctl(target, "account", "payment-method", "clear", "--org", "acme")
    assert cleared.exit_code == 0 and "R19: payment method removed" in cleared.stdout
    again = ledgerctl(target, "account", "payment-method", "clear", "--org", "acme")
    assert again.exit_code == 0 and "nothing changed" in again.stdout


def test_credits_invoices_and_payments_from_the_command_line(target: str, cli_clock: FixedClock) -> None:
    grant = ledgerctl(
        target,
        "credits",
        "grant",
        "--org",
        "acme",
        "--amount",
        "10",
        "--reason",
        "education program",
        "--expires",
        "2026-12-01T00:00:00Z",
    )
    assert grant.exit_code == 0 and "R16: granted $10.00 to acme" in grant.stdout
    assert ledgerctl(target, "credits", "grant", "--org", "acme", "--amount", "0.001", "--reason", "x").exit_code == 1
    assert ledgerctl(target, "account", "set", "--org", "acme", "--discount-percent", "10").exit_code == 0

    # B200 FLEX 09:00-14:50 (350 minutes, $50.40) and a late 10-minute A100 build found after the invoice.
    cli_clock.now = t("2026-10-02T15:00:00Z")
    with LedgerClient(target, retries=0) as client:
        client.append_events(
            [
                event("acme", "wl-1", "WORKLOAD_UP", "2026-10-02T09:00:00Z"),
                event("acme", "wl-1", "WORKLOAD_STOPPED", "2026-10-02T14:50:00Z", stop_reason="SCALED_DOWN"),
            ]
        )
    closed = ledgerctl(target, "invoices", "close", "--org", "acme", "--at", "2026-10-02T15:00:00Z")
    assert closed.exit_code == 0
    # R20: $50.40 - $5.04 = $45.36 is not over $50.00.
    assert "no invoice issued" in closed.stdout and "$45.36 (to the settled-through time" in closed.stdout
    with LedgerClient(target, retries=0) as client:
        client.append_events(
            [
                event(
                    "acme",
                    "build-1",
                    "WORKLOAD_UP",
                    "2026-10-02T10:00:00Z",
                    instance_type="A100",
                    workload_kind="BUILD",
                ),
                event(
                    "acme",
                    "build-1",
                    "WORKLOAD_STOPPED",
                    "2026-10-02T10:10:00Z",
                    instance_type="A100",
                    workload_kind="BUILD",
                    stop_reason="BUILD_SUCCEEDED",
                ),
            ]
        )
    # The log is settled through 14:50 only (R28): October's invoice is issued by the grace, an hour after it ends.
    cli_clock.now = t("2026-11-01T01:00:00Z")
    month_end = ledgerctl(target, "invoices", "close", "--org", "acme", "--json")
    assert month_end.exit_code == 0
    [issued] = as_json(month_end)["issued"]
    # $50.40 + 10 x $0.0456 = $0.456 -> $0.46: subtotal $50.86, discount $5.086 -> $5.09, total $45.77, credit $10.
    assert (issued["subtotal"], issued["discount"], issued["total"]) == ("50.86", "5.09", "45.77")
    assert (issued["credits_total"], issued["amount_due"], issued["trigger"]) == ("10.00", "35.77", "MONTH_END")
    again = ledgerctl(target, "invoices", "close", "--org", "acme", "--at", "2026-11-01T01:00:00Z", "--json")
    assert as_json(again)["issued"] == [] and "closes at 2026-12-01" in as_json(again)["explanation"]
    assert as_json(month_end)["issued"][0]["grace"]["fired"] is True

    listed = ledgerctl(target, "invoices", "list", "--org", "acme")
    assert listed.exit_code == 0 and "MONTH_END" in listed.stdout and "$35.77" in listed.stdout
    statement = ledgerctl(target, "invoices", "show", "--org", "acme", "--invoice", "1")
    assert statement.exit_code == 0
    for text in (
        "Invoice #1",
        "R17: end of the calendar month",
        "R10/R11",
        "Discount (R20: 10% of the subtotal, before credits)",
        "-$5.09",
        "Credits applied (R16)",
        "Amount due",
        "$35.77",
        "R21",
    ):
        assert text in statement.stdout, text
    shown = as_json(ledgerctl(target, "invoices", "show", "--org", "acme", "--json"))
    assert [line["amount"] for line in shown["lines"]] == ["0.46", "50.40", "-5.09"]
    assert shown["covers"]["sessions"][0]["from"] == 0 and shown["payment_status"] == "PENDING"

    credits = as_json(ledgerctl(target, "credits", "list", "--org", "acme", "--json"))
    assert [(c["amount"], c["used"], c["left"]) for c in credits["credits"]] == [("10.00", "10.00", "0.00")]
    table = ledgerctl(target, "credits", "list", "--org", "acme")
    assert "used up" in table.stdout and "education program" in table.stdout

    bad_outcome = ledgerctl(
        target, "payments", "record", "--org", "acme", "--invoice", "1", "--outcome", "maybe", "--reference", "ch_1"
    )
    assert bad_outcome.exit_code == 2
    paid = ledgerctl(
        target,
        "payments",
        "record",
        "--org",
        "acme",
        "--invoice",
        "1",
        "--outcome",
        "succeeded",
        "--reference",
        "ch_3NqPaid0001",
        "--json",
    )
    assert paid.exit_code == 0 and as_json(paid)["payment_status"] == "PAID" and as_json(paid)["amount"] == "35.77"
    twice = ledgerctl(
        target,
        "payments",
        "record",
        "--org",
        "acme",
        "--invoice",
        "1",
        "--outcome",
        "succeeded",
        "--reference",
        "ch_3NqPaid0002",
    )
    assert twice.exit_code == 1 and "already paid" in twice.stderr
    missing = ledgerctl(target, "invoices", "show", "--org", "acme", "--invoice", "9")
    assert missing.exit_code == 1 and "NOT_FOUND" in missing.stderr

    state = as_json(ledgerctl(target, "account", "show", "--org", "acme", "--json"))
    assert (state["credit_left"], state["unpaid_amount_due"], state["open_period"]["total"]) == ("0.00", "0.00", "0.00")


def test_account_watch_prints_the_state_then_each_change(target: str) -> None:
    assert ledgerctl(target, "account", "payment-method", "set", "--org", "acme", "--reference", "pm_1NqLiJLkdIwHu7ix")
    watched = ledgerctl(target, "account", "watch", "--org", "acme", "--count", "1", "--json")
    assert watched.exit_code == 0 and json.loads(watched.stdout) == {"state": "ACTIVE"}
    replayed = ledgerctl(target, "account", "watch", "--org", "acme", "--from", "0", "--count", "1", "--json")
    [line] = replayed.stdout.splitlines()
    assert json.loads(line)["change"]["change"] == "PAYMENT_METHOD_SET" and json.loads(line)["change"]["rule"] == "R19"


def test_every_billing_command_is_unreachable_exit_3_with_a_hint() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = runner.invoke(app, ["account", "show", "--org", "acme", "--target", f"127.0.0.1:{port}"])
    assert result.exit_code == 3 and "cannot reach the ledger" in result.stderr


def test_every_billing_command_has_help() -> None:
    for command in (
        ["account", "set"],
        ["account", "show"],
        ["account", "watch"],
        ["account", "payment-method", "set"],
        ["account", "payment-method", "clear"],
        ["credits", "grant"],
        ["credits", "list"],
        ["invoices", "list"],
        ["invoices", "show"],
        ["invoices", "close"],
        ["payments", "record"],
    ):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.stdout, command
