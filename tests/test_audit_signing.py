"""Server-side checkpoint signing: consistency checks before every signature, storage, schedule and key handling."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from sqlalchemy import text
from usageledger.v1 import audit_pb2 as apb
from usageledger.v1 import audit_pb2_grpc as apb_grpc

from client.ledger_client import LedgerClient
from ledger.intake import Ledger
from ledger.log.merkle import InMemoryTree, consistency_proof, verify_consistency
from ledger.log.note import NoteSigner, NoteVerifier, generate_signer_key, open_checkpoint, write_private_key_file
from ledger.log.signing import (
    CheckpointConflict,
    CheckpointRefused,
    CheckpointSchedule,
    CheckpointSigner,
    StoredCheckpoint,
    frontier_nodes,
)
from server.app import start_server
from server.main import main as server_main
from storage.sql import SqlStore
from tests.conftest import EventFactory, FixedClock

if TYPE_CHECKING:
    from tests.audit_support import TamperFactory

pytest_plugins = ["tests.audit_support"]

SIGNER_KEY = generate_signer_key("usage-ledger.local")
SIGNER = NoteSigner(SIGNER_KEY)

# Storage-independent behaviour runs on SQLite only; PostgreSQL where storage matters (locks, triggers, nodes).
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _signer(ledger: Ledger) -> CheckpointSigner:
    assert isinstance(ledger.store, SqlStore)
    return CheckpointSigner(ledger.store, SIGNER, clock=ledger.clock)


def _checkpoint_count(store: SqlStore, log_id: str) -> int:
    found = store.latest_checkpoint(log_id)
    return 0 if found is None else sum(store.checkpoint_at(log_id, s) is not None for s in range(found.size + 1))


def test_frontier_nodes_are_the_binary_decomposition() -> None:
    assert frontier_nodes(0) == []
    assert frontier_nodes(1) == [(0, 0)]
    assert frontier_nodes(6) == [(2, 0), (1, 2)]
    assert frontier_nodes(13) == [(3, 0), (2, 2), (0, 12)]


def test_signs_the_current_size_once_and_extends_it_consistently(ledger: Ledger, make_event: EventFactory) -> None:
    signer = _signer(ledger)
    ledger.append_events([make_event() for _ in range(5)])
    first, created = signer.sign("org/acme")
    assert created and first.size == 5
    assert open_checkpoint(first.note, NoteVerifier(SIGNER.verifier_key), "usage-ledger.local/org/acme").size == 5
    assert first.root_hash == ledger.store.head("org/acme").root_hash
    assert signer.sign("org/acme") == (first, False)  # nothing new: the stored checkpoint, no new signature

    ledger.append_events([make_event() for _ in range(6)])
    second, created = signer.sign("org/acme")
    assert created and second.size == 11
    tree = InMemoryTree(e.encoded() for e in ledger.store.iter_entries("org/acme"))
    assert second.root_hash == tree.root()
    assert signer.latest("org/acme") == second
    assert signer.at("org/acme", 5) == first
    assert second.signed_at == ledger.clock()


def test_add_checkpoint_refuses_when_another_signer_got_there_first(ledger: Ledger, make_event: EventFactory) -> None:
    signer = _signer(ledger)
    ledger.append_events([make_event() for _ in range(3)])
    stored, _ = signer.sign("org/acme")
    assert isinstance(ledger.store, SqlStore)
    stale = StoredCheckpoint("org/acme", 4, bytes(32), stored.note, 0)
    with pytest.raises(CheckpointConflict):
        ledger.store.add_checkpoint(stale, None)  # the newest is now of size 3, not "none"
    with pytest.raises(CheckpointConflict):
        ledger.store.add_checkpoint(stored, 2)


def test_checkpoints_are_append_only(ledger: Ledger, make_event: EventFactory) -> None:
    ledger.append_events([make_event()])
    _signer(ledger).sign("org/acme")
    assert isinstance(ledger.store, SqlStore)
    for statement in ("UPDATE checkpoints SET size = 7", "DELETE FROM checkpoints"):
        with pytest.raises(Exception, match="append-only"), ledger.store.writer.begin() as conn:
            conn.execute(text(statement))


def test_a_rewritten_log_is_never_signed_and_nothing_is_stored(
    ledger: Ledger, tamper: TamperFactory, make_event: EventFactory
) -> None:
    signer = _signer(ledger)
    assert isinstance(ledger.store, SqlStore)
    ledger.append_events([make_event() for _ in range(6)])
    signed, _ = signer.sign("org/acme")
    # Rewrite the whole log underneath with valid hashes (cheaper GPU), then let it grow.
    bodies = [e.body.replace(b'"A100"', b'"L4"') for e in ledger.store.iter_entries("org/acme")]
    with tamper() as t:
        t.replace_log("org/acme", bodies, ledger.clock())
    assert ledger.store.head("org/acme").root_hash != signed.root_hash
    with pytest.raises(
        CheckpointRefused, match=r"its tree of size 6 no longer has the signed root .* \(log rewritten\)"
    ):
        signer.sign("org/acme")  # same size: the signed root is gone
    ledger.append_events([make_event(instance_type="L4")])
    with pytest.raises(CheckpointRefused, match="log rewritten"):
        signer.sign("org/acme")
    assert ledger.store.latest_checkpoint("org/acme") == signed
    assert _checkpoint_count(ledger.store, "org/acme") == 1


@sqlite_only
def test_a_truncated_log_is_never_signed(ledger: Ledger, tamper: TamperFactory, make_event: EventFactory) -> None:
    signer = _signer(ledger)
    assert isinstance(ledger.store, SqlStore)
    ledger.append_events([make_event() for _ in range(8)])
    signer.sign("org/acme")
    with tamper() as t:
        t.truncate("org/acme", 5)
    with pytest.raises(CheckpointRefused, match="has 5 entries but a checkpoint of 8 was signed"):
        signer.sign("org/acme")


@sqlite_only
def test_an_altered_entry_after_the_last_checkpoint_is_never_signed(
    ledger: Ledger, tamper: TamperFactory, make_event: EventFactory
) -> None:
    signer = _signer(ledger)
    assert isinstance(ledger.store, SqlStore)
    ledger.append_events([make_event() for _ in range(4)])
    signer.sign("org/acme")
    ledger.append_events([make_event() for _ in range(4)])
    body = ledger.entry("org/acme", 6).body.replace(b'"A100"', b'"L4"')
    with tamper() as t:
        t("UPDATE entries SET body = :body WHERE log_id = 'org/acme' AND seq = 6", body=body)
    with pytest.raises(CheckpointRefused, match=r"entry #6 does not chain to entry #5"):
        signer.sign("org/acme")
    latest = ledger.store.latest_checkpoint("org/acme")
    assert latest is not None and latest.size == 4


@sqlite_only
def test_stored_merkle_nodes_that_disagree_with_the_entries_are_never_signed(
    ledger: Ledger, tamper: TamperFactory, make_event: EventFactory
) -> None:
    signer = _signer(ledger)
    ledger.append_events([make_event() for _ in range(4)])
    with tamper() as t:
        t("UPDATE entries SET subtree_hashes = :h WHERE log_id = 'org/acme' AND seq = 3", h=bytes(96))
    with pytest.raises(CheckpointRefused, match="entry #3: stored Merkle subtree hashes do not match"):
        signer.sign("org/acme")


@sqlite_only
def test_consistency_between_successive_checkpoints(ledger: Ledger, make_event: EventFactory) -> None:
    signer = _signer(ledger)
    sizes = []
    for batch in (1, 2, 5, 1, 9):
        ledger.append_events([make_event() for _ in range(batch)])
        sizes.append(signer.sign("org/acme")[0])
    tree = InMemoryTree(e.encoded() for e in ledger.store.iter_entries("org/acme"))
    for old, new in itertools.pairwise(sizes):
        proof = consistency_proof(old.size, new.size, tree)
        verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)


@pytest.mark.parametrize(
    ("every", "seconds", "size", "signed", "elapsed", "due"),
    [
        (10, 0, 9, None, None, False),
        (10, 0, 10, None, None, True),
        (10, 0, 25, 15, 0.0, True),
        (10, 0, 24, 15, 1e9, False),
        (0, 60, 1, None, None, True),  # never signed: due at once
        (0, 60, 16, 15, 59.0, False),
        (0, 60, 16, 15, 60.0, True),
        (0, 60, 15, 15, 1e9, False),  # not grown: nothing to sign
        (0, 0, 100, None, None, False),
    ],
)
def test_schedule(every: int, seconds: float, size: int, signed: int | None, elapsed: float | None, due: bool) -> None:
    assert CheckpointSchedule(every, seconds).due(size, signed, elapsed) is due


def test_background_signer_signs_every_n_entries_and_after_t_seconds(
    sqlite_url: str, clock: FixedClock, tmp_path: Path, make_event: EventFactory
) -> None:
    key = tmp_path / "k"
    write_private_key_file(key, SIGNER_KEY)
    running = start_server(sqlite_url, clock=clock, signing_key=key, checkpoint_every=5, checkpoint_seconds=0.3)
    try:
        with LedgerClient(f"127.0.0.1:{running.port}", retries=0) as client:
            stub = apb_grpc.AuditServiceStub(client.channel)
            client.append_events([make_event() for _ in range(7)])
            checkpoint = _wait_for(stub, "org/acme", 7)
            client.append_events([make_event()])  # one more: only the T trigger signs it
            later = _wait_for(stub, "org/acme", 8)
            assert later.size == 8 and checkpoint.size == 7
    finally:
        running.stop(grace=None)


def _wait_for(stub: apb_grpc.AuditServiceStub, log_id: str, size: int) -> apb.Checkpoint:
    deadline = time.monotonic() + 10
    while True:
        try:
            found = stub.GetCheckpoint(apb.GetCheckpointRequest(log_id=log_id), timeout=5).checkpoint
            if found.size == size:
                return found
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise
        assert time.monotonic() < deadline, f"no checkpoint of size {size} signed in time"
        time.sleep(0.05)


def test_without_a_key_checkpoint_rpcs_say_how_to_configure_one(server_port: int) -> None:
    with LedgerClient(f"127.0.0.1:{server_port}", retries=0) as client:
        stub = apb_grpc.AuditServiceStub(client.channel)
        for call, request in (
            (stub.GetCheckpoint, apb.GetCheckpointRequest(log_id="system")),
            (stub.SignCheckpoint, apb.SignCheckpointRequest(log_id="system")),
            (stub.GetVerifierKey, apb.GetVerifierKeyRequest()),
        ):
            with pytest.raises(grpc.RpcError) as err:
                call(request, timeout=5)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "ledgerctl audit keygen" in (err.value.details() or "")
            assert "--signing-key" in (err.value.details() or "")
        # Proofs need no key.
        response = stub.GetInclusionProof(apb.GetInclusionProofRequest(log_id="system", sequence=0), timeout=5)
        assert response.tree_size == 1 and not response.HasField("checkpoint")


@pytest.fixture
def server_port(sqlite_url: str, clock: FixedClock) -> Iterator[int]:
    running = start_server(sqlite_url, clock=clock)
    yield running.port
    running.stop(grace=None)


def test_a_readable_key_file_is_warned_about_and_the_key_is_never_logged(
    sqlite_url: str, clock: FixedClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = tmp_path / "k"
    write_private_key_file(key, SIGNER_KEY)
    os.chmod(key, 0o644)
    with caplog.at_level(logging.DEBUG):
        running = start_server(sqlite_url, clock=clock, signing_key=key, checkpoint_every=0, checkpoint_seconds=0)
        running.stop(grace=None)
    assert "mode 0644" in caplog.text and "chmod 600" in caplog.text
    secret = SIGNER_KEY.rsplit("+", 1)[1]
    assert secret not in caplog.text and "PRIVATE+KEY" not in caplog.text
    assert NoteSigner(SIGNER_KEY).verifier_key in caplog.text


@pytest.mark.usefixtures("restore_root_logging")
def test_server_refuses_to_start_with_a_missing_or_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database = f"sqlite:///{tmp_path / 'l.db'}"
    listen = ["--database-url", database, "--listen", "127.0.0.1:0"]
    code = server_main([*listen, "--signing-key", str(tmp_path / "no")])
    assert code == 1 and "No such file" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.write_text("PRIVATE+KEY+x+00000000+AAAA\n")
    os.chmod(bad, 0o600)
    code = server_main([*listen, "--signing-key", str(bad)])
    assert code == 1 and "private key file" in capsys.readouterr().err
