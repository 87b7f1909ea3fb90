"""The outside review's forgery (issue #23, item 1): rewrite a log with valid hashes, copy the rewritten roots into the
unsigned checkpoints.root_hash column, leave the signed notes alone. The server must refuse to sign it, and an
auditor with an empty state directory must still see that stored notes contradict the log (both stores)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from typer.testing import Result
from usageledger.v1 import audit_pb2 as apb
from usageledger.v1 import audit_pb2_grpc as apb_grpc

from client.cli import app
from client.ledger_client import LedgerClient
from ledger.log.note import Checkpoint, NoteSigner, sign_checkpoint
from storage.sql import open_store
from tests.cli_support import LedgerctlRunner
from tests.conftest import EventFactory
from tests.telemetry_support import install_meter_provider, metric_sum

if TYPE_CHECKING:
    from tests.audit_support import TamperFactory

pytest_plugins = ["tests.audit_support"]

RUNNER = LedgerctlRunner(
    env={"LEDGER_DATABASE_URL": None, "LEDGER_VERIFIER_KEY": None, "LEDGER_NAME": None, "LEDGER_TARGET": None}
)


def ledgerctl(*args: str | Path) -> Result:
    return RUNNER.invoke(app, [str(a) for a in args])


def _storage_sample(make_event: EventFactory, number: int, gigabytes: str) -> dict[str, Any]:
    return make_event(
        event_id=f"disk-{number}",
        type="STORAGE_SAMPLE",
        workload_id="wl-1",
        storage_kind="NETWORK_VOLUME",
        volume_id="vol-models",
        gigabytes=gigabytes,
        interval_seconds=300,
        occurred_at=f"2026-10-05T09:{number:02d}:00.000000Z",
    )


def _signed_log(client: LedgerClient, make_event: EventFactory) -> apb_grpc.AuditServiceStub:
    """org/acme with 12 entries (a session and 11 storage samples) and checkpoints of sizes 6 and 12."""
    stub = apb_grpc.AuditServiceStub(client.channel)
    client.append_events([make_event()] + [_storage_sample(make_event, n, "1200") for n in range(1, 6)])
    stub.SignCheckpoint(apb.SignCheckpointRequest(log_id="org/acme"))
    client.append_events([_storage_sample(make_event, n, "1200") for n in range(6, 12)])
    stub.SignCheckpoint(apb.SignCheckpointRequest(log_id="org/acme"))
    return stub


def _forge(tamper: TamperFactory) -> None:
    """The review's rewrite: entry #3 (a 1200 GB sample) becomes 91200 GB, everything recomputed, notes left."""
    with tamper() as t:
        [row] = [r for r in t.rows("org/acme") if r["seq"] == 3]
        body = bytes(row["body"])
        assert b'"gigabytes":"1200"' in body
        t.rewrite_entry("org/acme", 3, body.replace(b'"gigabytes":"1200"', b'"gigabytes":"91200"'))
        t.set_checkpoint_roots("org/acme")


def test_a_rewritten_log_with_forged_checkpoint_columns_is_refused_logged_and_counted(
    db_url: str,
    target: str,
    audit_client: LedgerClient,
    tamper: TamperFactory,
    make_event: EventFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_meter_provider()
    stub = _signed_log(audit_client, make_event)
    _forge(tamper)
    audit_client.append_events([_storage_sample(make_event, 12, "1200")])
    refusals = metric_sum("usageledger.signing.refusals")
    with caplog.at_level(logging.ERROR, logger="usageledger.checkpoints"), pytest.raises(grpc.RpcError) as refused:
        stub.SignCheckpoint(apb.SignCheckpointRequest(log_id="org/acme"))
    assert refused.value.code() == grpc.StatusCode.DATA_LOSS
    assert "checkpoints table altered" in (refused.value.details() or "")
    assert any("refusing to sign log org/acme" in r.getMessage() for r in caplog.records)
    assert metric_sum("usageledger.signing.refusals") == refusals + 1
    store = open_store(db_url)
    try:
        assert store.latest_checkpoint("org/acme") is not None
        assert [c.size for c in store.checkpoints("org/acme", 100)] == [6, 12]  # nothing new was stored
    finally:
        store.close()


def test_a_rewritten_log_at_its_signed_size_is_refused(
    target: str, audit_client: LedgerClient, tamper: TamperFactory, make_event: EventFactory
) -> None:
    stub = _signed_log(audit_client, make_event)
    _forge(tamper)
    with pytest.raises(grpc.RpcError) as refused:
        stub.SignCheckpoint(apb.SignCheckpointRequest(log_id="org/acme"))
    assert refused.value.code() == grpc.StatusCode.DATA_LOSS


def test_verify_compares_every_stored_row_with_its_signed_note(
    db_url: str,
    target: str,
    audit_client: LedgerClient,
    tamper: TamperFactory,
    make_event: EventFactory,
    key_file: Path,
    verifier_key: str,
    tmp_path: Path,
) -> None:
    """The review's forgery signed as the old server signed it (size 13): the newest note matches the log, and the
    older notes' rows were altered to match it too; only their signed notes tell."""
    _signed_log(audit_client, make_event)
    _forge(tamper)
    audit_client.append_events([_storage_sample(make_event, 12, "1200")])
    _sign_forgery(db_url, key_file, tamper)
    code, report = _verify(db_url, verifier_key, tmp_path / "empty-state")
    assert code == 1
    failure = report["first_failure"]["failure"]
    assert failure.startswith("log org/acme: the ledger's checkpoint of size 6 does not verify"), failure
    assert "the checkpoints row says size 6" in failure and "checkpoints table altered" in failure


def _sign_forgery(db_url: str, key_file: Path, tamper: TamperFactory) -> None:
    """What the old server did next: sign the forged log at its current size with the real key, and store it."""
    store = open_store(db_url)
    try:
        head = store.head("org/acme")
    finally:
        store.close()
    note = sign_checkpoint(
        Checkpoint("usage-ledger.local/org/acme", head.size, head.root_hash), NoteSigner(key_file.read_text().strip())
    )
    with tamper() as t:
        t(
            "INSERT INTO checkpoints (log_id, size, root_hash, note, signed_at) VALUES (:log, :size, :root, :note, 0)",
            log="org/acme",
            size=head.size,
            root=head.root_hash,
            note=note,
        )


def _rewrite_and_sign(
    db_url: str, client: LedgerClient, make_event: EventFactory, tamper: TamperFactory, key_file: Path
) -> None:
    """The rewrite with the checkpoint columns untouched, one more event, and a genuine signature over it all at
    size 13 (as the old server gave): the notes of sizes 6 and 12 contradict the log, the newest matches it."""
    _signed_log(client, make_event)
    with tamper() as t:
        [row] = [r for r in t.rows("org/acme") if r["seq"] == 3]
        t.rewrite_entry("org/acme", 3, bytes(row["body"]).replace(b'"1200"', b'"91200"'))
    client.append_events([_storage_sample(make_event, 12, "1200")])
    _sign_forgery(db_url, key_file, tamper)


def _verify(db_url: str, verifier_key: str, state_dir: Path) -> tuple[int, Any]:
    result = ledgerctl(
        "audit",
        "verify",
        "--database-url",
        db_url,
        "--verifier-key",
        verifier_key,
        "--state-dir",
        state_dir,
        "--skip-invoices",
        "--json",
    )
    assert result.stdout, (result.output, result.exception)
    return result.exit_code, json.loads(result.stdout)


def test_verify_names_an_older_note_the_log_contradicts_though_the_newest_matches(
    db_url: str,
    target: str,
    audit_client: LedgerClient,
    tamper: TamperFactory,
    make_event: EventFactory,
    key_file: Path,
    verifier_key: str,
    tmp_path: Path,
) -> None:
    """The rewrite with the columns untouched and a genuine signature over it at size 13: the notes of sizes 6 and
    12 still contradict the log, and verify must say so with no saved checkpoint to go on."""
    _rewrite_and_sign(db_url, audit_client, make_event, tamper, key_file)
    code, report = _verify(db_url, verifier_key, tmp_path / "empty-state")
    assert code == 1
    failure = report["first_failure"]["failure"]
    assert "its first 6 entries" in failure and "not the signed checkpoint's" in failure, failure
    assert "log rewritten" in failure


def test_verify_through_the_api_lists_and_checks_every_note(
    db_url: str,
    target: str,
    audit_client: LedgerClient,
    tamper: TamperFactory,
    make_event: EventFactory,
    key_file: Path,
    verifier_key: str,
    tmp_path: Path,
) -> None:
    """The same forgery seen by an auditor with no database access: ListCheckpoints serves the older notes."""
    _rewrite_and_sign(db_url, audit_client, make_event, tamper, key_file)
    result = ledgerctl(
        "audit",
        "verify",
        "--target",
        target,
        "--verifier-key",
        verifier_key,
        "--state-dir",
        tmp_path / "empty",
        "--skip-invoices",
        "--json",
    )
    assert result.exit_code == 1, result.output
    failure = json.loads(result.stdout)["first_failure"]["failure"]
    assert "its first 6 entries" in failure and "log rewritten" in failure, failure


def test_list_checkpoints_pages_smallest_first_with_copies_from_the_notes(
    target: str, audit_client: LedgerClient, tamper: TamperFactory, make_event: EventFactory
) -> None:
    stub = _signed_log(audit_client, make_event)
    audit_client.append_events([_storage_sample(make_event, 12, "1200")])
    stub.SignCheckpoint(apb.SignCheckpointRequest(log_id="org/acme"))
    with tamper() as t:
        t("UPDATE checkpoints SET root_hash = :r WHERE log_id = 'org/acme' AND size = 6", r=bytes(32))
    sizes, token, pages = [], "", 0
    while True:
        page = stub.ListCheckpoints(apb.ListCheckpointsRequest(log_id="org/acme", page_size=2, page_token=token))
        pages += 1
        sizes += [c.size for c in page.checkpoints]
        for checkpoint in page.checkpoints:
            assert checkpoint.root_hash != bytes(32)  # the served copy is the note's, not the altered column
            assert checkpoint.signed_note.split("\n")[1] == str(checkpoint.size)
        token = page.next_page_token
        if not token:
            break
    assert sizes == [6, 12, 13] and pages == 2
    with pytest.raises(grpc.RpcError) as unknown:
        stub.ListCheckpoints(apb.ListCheckpointsRequest(log_id="org/nobody"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_verify_passes_every_note_of_an_untouched_log_and_checks_them_in_order(
    db_url: str,
    target: str,
    audit_client: LedgerClient,
    make_event: EventFactory,
    verifier_key: str,
    tmp_path: Path,
) -> None:
    _signed_log(audit_client, make_event)
    code, report = _verify(db_url, verifier_key, tmp_path / "state")
    assert code == 0, report
    [log] = [entry for entry in report["logs"] if entry["log_id"] == "org/acme"]
    assert log["checkpoints_verified"] == [6, 12]


def test_an_inclusion_proof_is_never_served_against_a_row_whose_size_is_not_its_notes(
    target: str, audit_client: LedgerClient, tamper: TamperFactory, make_event: EventFactory
) -> None:
    stub = _signed_log(audit_client, make_event)
    with tamper() as t:
        t("UPDATE checkpoints SET size = 11 WHERE log_id = 'org/acme' AND size = 12")
    with pytest.raises(grpc.RpcError) as altered:
        stub.GetInclusionProof(apb.GetInclusionProofRequest(log_id="org/acme", sequence=0, tree_size=11))
    assert altered.value.code() == grpc.StatusCode.DATA_LOSS
    assert "checkpoints table altered" in (altered.value.details() or "")
    newest = stub.GetInclusionProof(apb.GetInclusionProofRequest(log_id="org/acme", sequence=0))
    assert newest.tree_size == 12 and newest.checkpoint.size == 12  # the note's size, whatever the row says
