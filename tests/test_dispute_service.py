"""SupportService on a real server and `ledgerctl support` as a person runs it (R27 lookups, R23 adjustments).

The CLI tests use examples/day.jsonl: req-000384 on ep-llama was in flight on wl-llama-flex-03 when it was killed by
OOM at 11:47:07.431403 (examples/README.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import given
from hypothesis import strategies as st
from usageledger.v1 import audit_pb2 as apb
from usageledger.v1 import audit_pb2_grpc as apb_grpc
from usageledger.v1 import ledger_pb2 as lpb
from usageledger.v1 import support_pb2 as spb
from usageledger.v1 import support_pb2_grpc as spb_grpc

from client.ledger_client import LedgerClient
from ledger.dispute import decimal_text
from ledger.log.note import NoteSigner, NoteVerifier, generate_signer_key, write_private_key_file
from ledger.log.proofs import load_proof
from server.app import RunningServer, start_server
from tests.conftest import EXAMPLE_DAY, FixedClock
from tests.test_dispute_reconstruction import at, lifecycle_day
from wire.convert import micros_to_timestamp
from wire.support import seconds_text


@pytest.fixture
def running(sqlite_url: str, clock: FixedClock) -> Iterator[RunningServer]:
    server = start_server(sqlite_url, "127.0.0.1:0", clock=clock)
    yield server
    server.stop(grace=None)


@pytest.fixture
def client(running: RunningServer) -> Iterator[LedgerClient]:
    with LedgerClient(f"127.0.0.1:{running.port}", retries=0) as c:
        yield c


def support(client: LedgerClient) -> Any:
    return spb_grpc.SupportServiceStub(client.channel)


def violations(err: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(err)
    assert status is not None
    found = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found += [v.field for v in bad.field_violations]
    return found


def test_r27_reconstruct_charges_over_grpc(client: LedgerClient) -> None:
    client.append_events(lifecycle_day().items)
    request = spb.ReconstructChargesRequest(endpoint_id="ep-chat", request_id="req-4")
    request.approximate_time.CopyFrom(micros_to_timestamp(at("10:30:00")))
    response = support(client).ReconstructCharges(request, timeout=10)
    assert (response.org_id, response.currency_code) == ("acme", "USD")
    assert [s.workload_id for s in response.sessions] == ["wl-warm", "wl-build", "wl-a", "wl-oom"]
    oom = response.sessions[3]
    # 110.5 s -> 2 minutes x $0.0456 = $0.0912 (R4, R10); R25 split as in test_dispute_reconstruction.
    assert (oom.billed_units, oom.unit, oom.amount) == (2, "minute", "0.0912")
    assert (oom.attribution.serving_seconds, oom.attribution.rounding_seconds) == ("50.5", "9.5")
    assert oom.stop_reason == lpb.StopReason.Value("STOP_REASON_OOM")
    # req-4: 20.5 s alone x $0.00076 = $0.01558.
    assert (response.request.workload_id, response.request.attributed_amount) == ("wl-oom", "0.01558")
    assert response.request.attributed_amount_exact and not response.request.HasField("finish_time")
    assert sorted({z.rule for z in response.zero_lines}) == ["R1", "R5", "R8", "R9"]
    assert [s.rule for s in response.storage] == ["R14", "R13"]
    assert (response.totals.sessions_amount, response.totals.total_amount) == ("6.072", "6.0823125")
    assert all(len(e.ref.entry_hash) == 32 for e in response.entries)


def test_r27_bad_lookups_are_invalid_argument_naming_each_field(client: LedgerClient) -> None:
    client.append_events(lifecycle_day().items)
    stub = support(client)
    with pytest.raises(grpc.RpcError) as err:
        stub.ReconstructCharges(spb.ReconstructChargesRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(err.value) == ["endpoint_id", "approximate_time"]
    bad = spb.ReconstructChargesRequest(endpoint_id="ep-chat")
    bad.start_time.CopyFrom(micros_to_timestamp(at("11:00:00")))
    bad.end_time.CopyFrom(micros_to_timestamp(at("10:00:00")))
    bad.tolerance.seconds = 60
    with pytest.raises(grpc.RpcError) as err:
        stub.ReconstructCharges(bad, timeout=10)
    assert violations(err.value) == ["end_time", "tolerance"]
    with pytest.raises(grpc.RpcError) as err:
        stub.ReconstructCharges(spb.ReconstructChargesRequest(request_id="req-nope"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "R27" in (err.value.details() or "")


def test_r23_adjust_charges_checks_the_cited_hash_and_later_lookups_show_it(client: LedgerClient) -> None:
    client.append_events(lifecycle_day().items)
    stub = support(client)
    lookup = spb.ReconstructChargesRequest(request_id="req-4")
    stop = stub.ReconstructCharges(lookup, timeout=10).sessions[-1].refs[-1]  # wl-oom's OOM STOPPED
    wrong = spb.DisputeEntryRef(log_id=stop.log_id, sequence=stop.sequence, entry_hash=b"\0" * 32)
    adjust = spb.AdjustChargesRequest(org_id="acme", ticket="T-77", amount="-0.0912", reason="R4: platform OOM")
    with pytest.raises(grpc.RpcError) as err:
        stub.AdjustCharges(spb.AdjustChargesRequest(**{**_fields(adjust), "corrects": [wrong]}), timeout=10)
    assert violations(err.value) == ["corrects[0].entry_hash"]
    with pytest.raises(grpc.RpcError) as err:
        stub.AdjustCharges(spb.AdjustChargesRequest(org_id="acme", amount="x"), timeout=10)
    assert violations(err.value) == ["ticket", "amount", "reason", "corrects"]

    adjust.corrects.append(stop)
    made = stub.AdjustCharges(adjust, timeout=10).adjustment
    assert (made.ticket, made.amount, made.corrects[0].sequence) == ("T-77", "-0.0912", stop.sequence)
    assert made.explanation.startswith("R23:")
    (shown,) = stub.ReconstructCharges(lookup, timeout=10).adjustments
    assert (shown.ticket, shown.amount, shown.ref.sequence) == ("T-77", "-0.0912", made.ref.sequence)
    assert not shown.invoice.invoiced and shown.explanation.startswith("R23: ticket T-77: credit of $0.0912")


def test_r23_a_resent_adjustment_credits_once_and_a_new_request_id_credits_again(client: LedgerClient) -> None:
    client.append_events(lifecycle_day().items)
    stub = support(client)
    stop = stub.ReconstructCharges(spb.ReconstructChargesRequest(request_id="req-4"), timeout=10).sessions[-1].refs[-1]
    adjust = spb.AdjustChargesRequest(
        org_id="acme", ticket="T-78", amount="-0.05", reason="R4: platform OOM", corrects=[stop]
    )
    first = stub.AdjustCharges(adjust, timeout=10)
    size = client.head("org/acme").size
    resent = stub.AdjustCharges(adjust, timeout=10)  # a retry after a lost reply, or the command run twice
    assert not first.duplicate and resent.duplicate
    assert resent.adjustment.ref == first.adjustment.ref and "already appended" in resent.adjustment.explanation
    assert client.head("org/acme").size == size  # nothing appended
    keyed = spb.AdjustChargesRequest(**{**_fields(adjust), "request_id": "adj-2"})
    second = stub.AdjustCharges(keyed, timeout=10)
    assert not second.duplicate and second.adjustment.ref.sequence == size
    assert stub.AdjustCharges(keyed, timeout=10).adjustment.ref == second.adjustment.ref
    shown = stub.ReconstructCharges(spb.ReconstructChargesRequest(request_id="req-4"), timeout=10).adjustments
    assert [a.ref.sequence for a in shown] == [first.adjustment.ref.sequence, second.adjustment.ref.sequence]
    with pytest.raises(grpc.RpcError) as err:
        stub.AdjustCharges(spb.AdjustChargesRequest(**{**_fields(adjust), "request_id": "bad id!"}), timeout=10)
    assert violations(err.value) == ["request_id"]


@given(st.integers(-(10**15), 10**15) | st.sampled_from([0, 1, -1, 10**6, 1_500_000, 999_999, 60 * 10**6]))
def test_seconds_in_an_answer_are_the_exact_decimal_of_their_microseconds(micros: int) -> None:
    """The answer writes whole-microsecond durations without a Fraction; the text is the exact one (R21)."""
    assert seconds_text(micros) == decimal_text(Fraction(micros, 1_000_000))[0]


def _fields(message: Any) -> dict[str, Any]:
    return {field.name: value for field, value in message.ListFields()}


def test_r27_cited_entries_come_with_inclusion_proofs_when_the_server_signs_checkpoints(
    sqlite_url: str, clock: FixedClock, tmp_path: Path
) -> None:
    key_file = tmp_path / "ledger.key"
    write_private_key_file(key_file, generate_signer_key("usage-ledger.local"))
    verifier = NoteVerifier(NoteSigner(key_file.read_text().strip()).verifier_key)
    server = start_server(
        sqlite_url, "127.0.0.1:0", clock=clock, signing_key=key_file, checkpoint_every=0, checkpoint_seconds=0
    )
    try:
        with LedgerClient(f"127.0.0.1:{server.port}", retries=0) as client:
            client.append_events(lifecycle_day().items)
            audit = apb_grpc.AuditServiceStub(client.channel)
            for log_id in ("org/acme", "system"):
                audit.SignCheckpoint(apb.SignCheckpointRequest(log_id=log_id), timeout=10)
            client.append_events([dict(lifecycle_day().items[0], event_id="after", occurred_at="2026-10-05T10:50:00Z")])
            plain = support(client).ReconstructCharges(spb.ReconstructChargesRequest(request_id="req-4"), timeout=10)
            response = support(client).ReconstructCharges(
                spb.ReconstructChargesRequest(request_id="req-4", include_proofs=True), timeout=10
            )
            target = f"127.0.0.1:{server.port}"
            folder = tmp_path / "proofs"
            written = ledgerctl("support", "lookup", "--request", "req-4", "--proofs", str(folder), target=target)
            as_json = ledgerctl(
                "support", "lookup", "--request", "req-4", "--proofs", str(folder), "--json", target=target
            )
    finally:
        server.stop(grace=None)
    # Asked for or not, the answer is the same but for the proofs and the note that says how to ask for them.
    assert not plain.proofs and any("include_proofs" in note for note in plain.notes)
    assert [e.ref for e in plain.entries] == [e.ref for e in response.entries]
    assert not any("include_proofs" in note for note in response.notes)
    proofs = {p.log_id: p for p in response.proofs}
    assert set(proofs) == {"org/acme", "system"}
    cited = {e.ref.sequence for e in response.entries if e.ref.log_id == "org/acme"}
    bundle = load_proof(proofs["org/acme"].bundle_json)
    bundle.verify(verifier)  # raises unless every entry is in the signed checkpoint
    assert {e.sequence for e in bundle.entries} | set(proofs["org/acme"].unproven_sequences) == cited
    assert json.loads(proofs["org/acme"].bundle_json)["format"] == "usage-ledger-proof/v2"  # one shared proof
    load_proof(proofs["system"].bundle_json).verify(verifier)
    assert not any("no signed checkpoint" in note for note in response.notes)

    # ledgerctl writes one proof.json per log, which check-proof verifies with no server at all.
    assert written.returncode == 0, written.stderr
    path = folder / "org-acme.proof.json"
    assert f"{path} (check: ledgerctl audit check-proof" in " ".join(written.stdout.split())
    report = json.loads(as_json.stdout)
    assert {p["file"] for p in report["proofs"]} == {str(path), str(folder / "system.proof.json")}
    assert load_proof(path.read_text()) == bundle
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "ledgerctl",
            "audit",
            "check-proof",
            str(path),
            "--verifier-key",
            verifier.verifier_key,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert checked.returncode == 0 and "verified" in checked.stdout, checked.stderr


# -- ledgerctl support ---------------------------------------------------------------------------------------------


def ledgerctl(*args: str, target: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "LEDGER_DATABASE_URL": ""}
    command = [sys.executable, "-m", "ledgerctl", *args, "--target", target]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_r27_ledgerctl_support_lookup_of_the_oom_request_in_the_example_day(running: RunningServer) -> None:
    target = f"127.0.0.1:{running.port}"
    assert ledgerctl("events", "ingest", str(EXAMPLE_DAY), "--json", target=target).returncode == 0

    result = ledgerctl(
        "support", "lookup", "--endpoint", "ep-llama", "--request", "req-000384", "--json", target=target
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # req-000384 started 11:46:57.123119 on wl-llama-flex-03, alone in flight until the OOM kill at 11:47:07.431403:
    # 10.308284 s x $0.00076 = $0.00783429584 (R25), billed up to the kill (R4).
    request = report["request"]
    assert (request["workload_id"], request["attributed_amount"], request["attributed_seconds"]) == (
        "wl-llama-flex-03",
        "0.00783429584",
        "10.308284",
    )
    assert (request["started_at"], request["finished_at"], request["killed_by"]) == (
        "2026-10-05T11:46:57.123119Z",
        None,
        "OOM",
    )
    assert request["in_flight_to"] == "2026-10-05T11:47:07.431403Z" and "R4" in request["rules"]
    sessions = {s["workload_id"]: s for s in report["sessions"]}
    for item in report["sessions"]:
        assert {"workload_id", "billed_units", "unit", "amount", "rules", "attribution"} <= set(item)
        assert set(item["attribution"]) >= {"cold_start_seconds", "serving_seconds", "idle_seconds", "rounding_seconds"}
    # wl-llama-flex-03: UP 09:02:47.784206 to OOM 11:47:07.431403 = 9859.647197 s -> 165 minutes (R10) x $0.0456 =
    # $7.524; cold start to READY 09:03:18.618753 = 30.834547 s; rounding 9900 - 9859.647197 = 40.352803 s.
    killed = sessions["wl-llama-flex-03"]
    assert (killed["billed_units"], killed["unit"], killed["amount"], killed["stop_reason"]) == (
        165,
        "minute",
        "7.524",
        "OOM",
    )
    assert (killed["attribution"]["cold_start_seconds"], killed["attribution"]["rounding_seconds"]) == (
        "30.834547",
        "40.352803",
    )
    assert {"R1", "R2", "R3", "R4", "R10", "R11"} <= set(killed["rules"])
    assert {"zero_lines", "storage", "anomalies", "adjustments", "entries"} <= set(report)
    started = next(e for e in report["entries"] if e["request_id"] == "req-000384")
    assert started["event_type"] == "REQUEST_STARTED" and len(started["entry_hash"]) == 64
    assert started["ref"] == f"org/acme:{started['sequence']}"

    text = ledgerctl("support", "lookup", "--request", "req-000384", target=target)
    assert text.returncode == 0, text.stderr
    for expected in ("Request req-000384", "wl-llama-flex-03", "OOM", "R25", "R4", "$7.524", "not yet invoiced"):
        assert expected in text.stdout, expected

    stop = killed["refs"][-1]["ref"]  # the OOM STOPPED entry, as LOG:SEQ
    adjusted = ledgerctl(
        "support", "adjust", "--org", "acme", "--ticket", "T-384", "--amount", "-0.01",
        "--reason", "R4: OOM mid-request", "--ref", stop, "--json", target=target,
    )  # fmt: skip
    assert adjusted.returncode == 0, adjusted.stdout + adjusted.stderr
    assert json.loads(adjusted.stdout)["adjustment"]["corrects"][0]["ref"] == stop
    again = json.loads(ledgerctl("support", "lookup", "--request", "req-000384", "--json", target=target).stdout)
    assert [(a["ticket"], a["amount"]) for a in again["adjustments"]] == [("T-384", "-0.01")]
    rerun = ledgerctl(
        "support", "adjust", "--org", "acme", "--ticket", "T-384", "--amount", "-0.01",
        "--reason", "R4: OOM mid-request", "--ref", stop, "--json", target=target,
    )  # fmt: skip
    assert rerun.returncode == 0 and json.loads(rerun.stdout)["duplicate"] is True


def test_ledgerctl_support_usage_errors_exit_2_and_refusals_exit_1(running: RunningServer) -> None:
    target = f"127.0.0.1:{running.port}"
    assert ledgerctl("support", "lookup", "--endpoint", "ep-llama", target=target).returncode == 2  # no time
    assert ledgerctl("support", "lookup", "--request", "r", "--around", "bad time", target=target).returncode == 2
    bad_ref = ledgerctl(
        "support", "adjust", "--org", "acme", "--ticket", "T", "--amount", "-1", "--reason", "x", "--ref", "oops",
        target=target,
    )  # fmt: skip
    assert bad_ref.returncode == 2 and "LOG:SEQ" in bad_ref.stderr
    refused = ledgerctl("support", "lookup", "--request", "req-none", "--json", target=target)
    assert refused.returncode == 1 and json.loads(refused.stdout)["code"] == "NOT_FOUND"
