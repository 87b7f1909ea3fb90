"""An org whose log does not exist is NOT_FOUND for every org-scoped read, after the role check (issue #21).

Before, `ledgerctl support lookup --org nope ...` answered "R9: ... scaled to zero, no charge" and usage, invoices
and account state answered zeros and ACTIVE: answers a support agent could paste into a ticket.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from usageledger.v1 import account_pb2 as acpb
from usageledger.v1 import account_pb2_grpc as acpb_grpc
from usageledger.v1 import audit_pb2 as apb
from usageledger.v1 import audit_pb2_grpc as apb_grpc
from usageledger.v1 import billing_pb2 as bpb
from usageledger.v1 import billing_pb2_grpc as bpb_grpc
from usageledger.v1 import support_pb2 as spb
from usageledger.v1 import support_pb2_grpc as spb_grpc
from usageledger.v1 import usage_pb2 as upb
from usageledger.v1 import usage_pb2_grpc as upb_grpc

from client.ledger_client import LedgerClient
from ledger.api_keys import Role, issue_key
from ledger.timeutil import parse_rfc3339_micros
from server.app import RunningServer, start_server
from storage.sql.keystore import SqlKeyStore
from tests.conftest import EventFactory, FixedClock

KNOWN = "acme"
UNKNOWN = "nope"
DAY_START = Timestamp(seconds=parse_rfc3339_micros("2026-10-05T00:00:00Z") // 1_000_000)
DAY_END = Timestamp(seconds=parse_rfc3339_micros("2026-10-06T00:00:00Z") // 1_000_000)
AROUND = Timestamp(seconds=parse_rfc3339_micros("2026-10-05T09:30:00Z") // 1_000_000)

# Every org-scoped read, as (name, call(channel, org, metadata)); each must answer NOT_FOUND for UNKNOWN.
Read = Callable[[grpc.Channel, str, tuple[tuple[str, str], ...]], Any]


def _watch(channel: grpc.Channel, org: str, metadata: tuple[tuple[str, str], ...]) -> Any:
    stream = acpb_grpc.AccountServiceStub(channel).WatchAccountState(
        acpb.WatchAccountStateRequest(org_id=org), metadata=metadata, timeout=10
    )
    first = next(iter(stream))
    stream.cancel()
    return first


READS: list[tuple[str, Read]] = [
    (
        "QueryUsage",
        lambda ch, org, md: upb_grpc.UsageServiceStub(ch).QueryUsage(
            upb.QueryUsageRequest(org_id=org, start_time=DAY_START, end_time=DAY_END), metadata=md, timeout=10
        ),
    ),
    (
        "ListInvoices",
        lambda ch, org, md: bpb_grpc.BillingServiceStub(ch).ListInvoices(
            bpb.ListInvoicesRequest(org_id=org), metadata=md, timeout=10
        ),
    ),
    (
        "GetInvoice",
        lambda ch, org, md: bpb_grpc.BillingServiceStub(ch).GetInvoice(
            bpb.GetInvoiceRequest(org_id=org, number=1), metadata=md, timeout=10
        ),
    ),
    (
        "ListCredits",
        lambda ch, org, md: bpb_grpc.BillingServiceStub(ch).ListCredits(
            bpb.ListCreditsRequest(org_id=org), metadata=md, timeout=10
        ),
    ),
    (
        "GetAccountSettings",
        lambda ch, org, md: acpb_grpc.AccountServiceStub(ch).GetAccountSettings(
            acpb.GetAccountSettingsRequest(org_id=org), metadata=md, timeout=10
        ),
    ),
    (
        "GetAccountState",
        lambda ch, org, md: acpb_grpc.AccountServiceStub(ch).GetAccountState(
            acpb.GetAccountStateRequest(org_id=org), metadata=md, timeout=10
        ),
    ),
    ("WatchAccountState", _watch),
    (
        "ReconstructCharges",
        lambda ch, org, md: spb_grpc.SupportServiceStub(ch).ReconstructCharges(
            spb.ReconstructChargesRequest(org_id=org, endpoint_id="ep-llama", approximate_time=AROUND),
            metadata=md,
            timeout=10,
        ),
    ),
    (
        "GetInclusionProof",
        lambda ch, org, md: apb_grpc.AuditServiceStub(ch).GetInclusionProof(
            apb.GetInclusionProofRequest(log_id=f"org/{org}", sequence=0, tree_size=1), metadata=md, timeout=10
        ),
    ),
]


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


@pytest.fixture
def channel(server: RunningServer, client: LedgerClient, make_event: EventFactory) -> Iterator[grpc.Channel]:
    client.append_events([make_event(org_id=KNOWN, endpoint_id="ep-llama")])
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.mark.parametrize(("name", "read"), READS, ids=[name for name, _ in READS])
def test_an_unknown_org_is_not_found_naming_it_and_a_known_one_is_answered(
    channel: grpc.Channel, name: str, read: Read
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        read(channel, UNKNOWN, ())
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND, name
    assert f"'{UNKNOWN}'" in (raised.value.details() or "") or f"org/{UNKNOWN}" in (raised.value.details() or "")
    try:
        read(channel, KNOWN, ())
    except grpc.RpcError as err:
        # The known org may have no invoice #1 or no signed checkpoint yet, but it is never an unknown org.
        assert "does not exist" not in (err.details() or ""), (name, err.details())
        assert error_info(err).reason != "ORG_NOT_FOUND"


def test_the_org_scoped_reads_say_org_not_found_in_their_error_info(channel: grpc.Channel) -> None:
    for name, read in READS:
        if name == "GetInclusionProof":
            continue  # a log read: the log, not the org, is what it names
        with pytest.raises(grpc.RpcError) as raised:
            read(channel, UNKNOWN, ())
        assert error_info(raised.value).reason == "ORG_NOT_FOUND", name


@pytest.fixture
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    url = f"sqlite:///{tmp_path_factory.mktemp('orgs') / 'ledger.db'}"
    running = start_server(url, clock=FixedClock(), require_auth=True, key_cache_seconds=0)
    yield running
    running.stop(grace=None)


def test_the_role_check_comes_first_so_a_bound_caller_learns_nothing_about_other_orgs(
    secured: RunningServer, make_event: EventFactory
) -> None:
    keys = SqlKeyStore(secured.ledger.store.writer)  # type: ignore[attr-defined]

    def token(role: Role, org: str | None) -> tuple[tuple[str, str], ...]:
        issued = issue_key(role, org, 0)
        keys.add(issued.record)
        return (("authorization", f"Bearer {issued.token}"),)

    admin, support = token(Role.ORG_ADMIN, KNOWN), token(Role.SUPPORT, None)
    secured.ledger.append_events([make_event(org_id="beta")])
    with grpc.insecure_channel(f"127.0.0.1:{secured.port}") as channel:
        for other in (UNKNOWN, "beta"):  # "beta" exists, UNKNOWN does not: the admin must not tell them apart
            with pytest.raises(grpc.RpcError) as raised:
                acpb_grpc.AccountServiceStub(channel).GetAccountState(
                    acpb.GetAccountStateRequest(org_id=other), metadata=admin, timeout=10
                )
            assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED, other
        with pytest.raises(grpc.RpcError) as raised:
            acpb_grpc.AccountServiceStub(channel).GetAccountState(
                acpb.GetAccountStateRequest(org_id=UNKNOWN), metadata=support, timeout=10
            )
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def ledgerctl(*args: str, target: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "LEDGER_DATABASE_URL": ""}
    command = [sys.executable, "-m", "ledgerctl", *args, "--target", target]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize(
    "command",
    [
        ("support", "lookup", "--org", UNKNOWN, "--endpoint", "ep-llama", "--around", "2026-10-05T11:45Z"),
        ("usage", "--org", UNKNOWN, "--from", "2026-10-05T00:00:00Z", "--to", "2026-10-06T00:00:00Z"),
        ("invoices", "list", "--org", UNKNOWN),
        ("account", "show", "--org", UNKNOWN),
        ("audit", "prove", "--org", UNKNOWN, "--seq", "0"),
    ],
    ids=["support-lookup", "usage", "invoices-list", "account-show", "audit-prove"],
)
def test_ledgerctl_exits_1_naming_the_unknown_org(
    sqlite_url: str, clock: FixedClock, make_event: EventFactory, command: tuple[str, ...]
) -> None:
    running = start_server(sqlite_url, clock=clock)
    try:
        running.ledger.append_events([make_event(org_id=KNOWN, endpoint_id="ep-llama")])
        target = f"127.0.0.1:{running.port}"
        result = ledgerctl(*command, target=target)
        assert result.returncode == 1, (result.stdout, result.stderr)
        shown = result.stdout + result.stderr
        assert "NOT_FOUND" in shown and UNKNOWN in shown
        assert "R9" not in shown  # the confident "scaled to zero, no charge" answer is gone
        if command[0] != "audit":  # prove always prints JSON; the others take --json
            as_json = ledgerctl(*command, "--json", target=target)
            assert as_json.returncode == 1 and json.loads(as_json.stdout)["code"] == "NOT_FOUND"
    finally:
        running.stop(grace=None)
