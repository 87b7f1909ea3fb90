"""examples/: setup-acme.sh sets acme up as the platform would (R16, R19), so the example day's first session ends
with an ACTIVE org whose invoices took the starter credit, through a real server and the real ledgerctl."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from usageledger.v1 import account_pb2 as apb
from usageledger.v1 import account_pb2_grpc as apb_grpc

from client.ledger_client import LedgerClient
from server.app import RunningServer
from tests.conftest import EXAMPLE_DAY
from tests.test_cli import as_json, ledgerctl

SETUP = Path(__file__).resolve().parents[1] / "examples" / "setup-acme.sh"


def setup_acme(target: str) -> subprocess.CompletedProcess[str]:
    # The script's ledgerctl is this interpreter's, as `python -m client.cli`, wherever the test runs from.
    wrapper = Path(os.environ.get("TMPDIR", "/tmp")) / f"ledgerctl-{os.getpid()}"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m client.cli "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "LEDGERCTL": str(wrapper), "COLUMNS": "200"}
    try:
        return subprocess.run(
            [str(SETUP), "--target", target], capture_output=True, text=True, timeout=120, env=env, check=False
        )
    finally:
        wrapper.unlink()


def test_r19_setup_acme_puts_a_payment_reference_and_a_starter_credit_on_file_once(
    server: RunningServer, client: LedgerClient
) -> None:
    target = f"127.0.0.1:{server.port}"
    for _ in range(2):  # a second run changes nothing (the reference is on file; the grant has a request ID)
        result = setup_acme(target)
        assert result.returncode == 0, result.stderr
        assert "state            ACTIVE" in result.stdout
    account = as_json(ledgerctl("account", "show", "--org", "acme", "--json", target=target))
    assert (account["state"], account["payment_method_on_file"]) == ("ACTIVE", True)
    state = client.call(
        apb_grpc.AccountServiceStub(client.channel).GetAccountState, apb.GetAccountStateRequest(org_id="acme")
    )
    assert state.payment_method_reference == "pm_acme_example_0001"  # the processor's opaque token, nothing more
    credits = as_json(ledgerctl("credits", "list", "--org", "acme", "--json", target=target))
    assert [(c["amount"], c["reason"]) for c in credits["credits"]] == [("25.00", "starter credit for a new workspace")]


def test_r16_r19_the_example_days_first_session_ends_active_with_the_starter_credit_applied(
    server: RunningServer,
) -> None:
    target = f"127.0.0.1:{server.port}"
    assert setup_acme(target).returncode == 0
    ingest = ledgerctl("events", "ingest", str(EXAMPLE_DAY), target=target)
    assert ingest.returncode == 0, ingest.stderr
    # The day closes every session; the server's clock is 2026-10-06T12:00Z, so everything is settled (R28).
    closed = ledgerctl("invoices", "close", "--org", "acme", "--json", target=target)
    assert closed.returncode == 0, closed.stderr
    invoices = as_json(ledgerctl("invoices", "list", "--org", "acme", "--json", target=target))["invoices"]
    assert invoices, "the day's usage exceeds R17's $50.00 threshold"
    # R16: the $25.00 starter credit is used up on the first invoice, before any card charge.
    credits = sum((Decimal(c["amount"]) for i in invoices for c in i["credits_applied"]), Decimal(0))
    assert credits == Decimal("25.00")
    assert Decimal(invoices[0]["amount_due"]) == Decimal(invoices[0]["total"]) - Decimal("25.00")
    # R19: a payment method is on file, so using up the credit does not deactivate the org.
    account = as_json(ledgerctl("account", "show", "--org", "acme", "--json", target=target))
    assert account["state"] == "ACTIVE"
    assert account["credit_left"] == "0.00"
