"""Fixtures and tampering helpers shared by the test_audit_* modules (loaded with `pytest_plugins`).

Tampering writes around the append-only triggers the way an attacker with database access could: SQLite drops the
triggers, PostgreSQL sets `session_replication_role = replica` (superuser) in the tampering connection only.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

from client.ledger_client import LedgerClient
from ledger.intake import derive_index
from ledger.log.entry import GENESIS_HASH, EntryKind, chain_hash, entry_bytes
from ledger.log.merkle import Frontier, leaf_hash
from ledger.log.note import NoteSigner, generate_signer_key, write_private_key_file
from server.app import RunningServer, start_server
from tests.conftest import EventFactory, FixedClock

LEDGER_KEY_NAME = "usage-ledger.local"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.key"
    write_private_key_file(path, generate_signer_key(LEDGER_KEY_NAME))
    return path


@pytest.fixture
def verifier_key(key_file: Path) -> str:
    return NoteSigner(key_file.read_text().strip()).verifier_key


@pytest.fixture
def signed_server(db_url: str, clock: FixedClock, key_file: Path) -> Iterator[RunningServer]:
    """A server that signs on demand only (no background thread), so tests decide when checkpoints exist."""
    running = start_server(
        db_url, "127.0.0.1:0", clock=clock, signing_key=key_file, checkpoint_every=0, checkpoint_seconds=0
    )
    yield running
    running.stop(grace=None)


@pytest.fixture
def target(signed_server: RunningServer) -> str:
    return f"127.0.0.1:{signed_server.port}"


@pytest.fixture
def audit_client(target: str) -> Iterator[LedgerClient]:
    with LedgerClient(target, retries=0) as c:
        yield c


AddEvents = Callable[..., None]
TamperFactory = Callable[[], contextlib.AbstractContextManager["Tamper"]]


@pytest.fixture
def add_events(make_event: EventFactory) -> AddEvents:
    """add_events(client, count, org="acme"): append `count` valid events to an org's log in one batch."""

    def add(client: LedgerClient, count: int, org: str = "acme") -> None:
        client.append_events([make_event(org_id=org, workload_id=f"wl-{i}") for i in range(count)])

    return add


@pytest.fixture
def tamper(db_url: str) -> TamperFactory:
    """`with tamper() as t:` a trigger-bypassing connection to the test's database."""
    return lambda: tampering(db_url)


# -- tampering -------------------------------------------------------------------------------------------------------


class Tamper:
    """A connection to the ledger's database that bypasses the append-only triggers."""

    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def __call__(self, statement: str, **params: Any) -> None:
        self.conn.execute(text(statement), params)

    def rows(self, log_id: str) -> list[dict[str, Any]]:
        result = self.conn.execute(text("SELECT * FROM entries WHERE log_id = :log ORDER BY seq"), {"log": log_id})
        return [dict(row._mapping) for row in result]

    def replace_log(self, log_id: str, bodies: Sequence[bytes], recorded_at: int) -> None:
        """Rebuild a whole log of events with the given bodies: valid chain, index columns, Merkle nodes and head."""
        self("DELETE FROM entries WHERE log_id = :log", log=log_id)
        previous, frontier = GENESIS_HASH, Frontier.empty()
        for seq, body in enumerate(bodies):
            encoded = entry_bytes(log_id, seq, "EVENT", recorded_at, body)
            entry_hash = chain_hash(previous, encoded)
            frontier, subtrees = frontier.append(leaf_hash(encoded))
            index = derive_index(EntryKind.EVENT, json.loads(body))
            row = {
                "log_id": log_id,
                "seq": seq,
                "kind": "EVENT",
                "recorded_at": recorded_at,
                "body": body,
                "prev_hash": previous,
                "entry_hash": entry_hash,
                "subtree_hashes": b"".join(subtrees),
                "event_id": index.event_id,
                "org_id": index.org_id,
                "endpoint_id": index.endpoint_id,
                "workload_id": index.workload_id,
                "request_id": index.request_id,
                "occurred_at": index.occurred_at,
            }
            columns = ", ".join(row)
            self(f"INSERT INTO entries ({columns}) VALUES ({', '.join(':' + c for c in row)})", **row)
            previous = entry_hash
        self.set_head(log_id, len(bodies), previous, frontier)

    def rewrite_entry(self, log_id: str, sequence: int, body: bytes) -> None:
        """Give one entry a new body and recompute what depends on it as docs/encoding.md and docs/audit.md define
        it: its index columns, every later entry hash and chain link, every stored subtree hash and the head. Only
        the signed notes are left as they were (nobody without the key can redo those)."""
        rows = self.rows(log_id)
        previous, frontier = GENESIS_HASH, Frontier.empty()
        for row in rows:
            seq = row["seq"]
            row_body = body if seq == sequence else bytes(row["body"])
            encoded = entry_bytes(log_id, seq, row["kind"], row["recorded_at"], row_body)
            entry_hash = chain_hash(previous, encoded)
            frontier, subtrees = frontier.append(leaf_hash(encoded))
            if seq >= sequence:
                index = derive_index(EntryKind(row["kind"]), json.loads(row_body))
                self(
                    "UPDATE entries SET body = :body, prev_hash = :prev, entry_hash = :hash, "
                    "subtree_hashes = :subtrees, event_id = :event_id, org_id = :org_id, endpoint_id = :endpoint_id, "
                    "workload_id = :workload_id, request_id = :request_id, occurred_at = :occurred_at "
                    "WHERE log_id = :log AND seq = :seq",
                    body=row_body,
                    prev=previous,
                    hash=entry_hash,
                    subtrees=b"".join(subtrees),
                    event_id=index.event_id,
                    org_id=index.org_id,
                    endpoint_id=index.endpoint_id,
                    workload_id=index.workload_id,
                    request_id=index.request_id,
                    occurred_at=index.occurred_at,
                    log=log_id,
                    seq=seq,
                )
            previous = entry_hash
        self.set_head(log_id, len(rows), previous, frontier)

    def set_checkpoint_roots(self, log_id: str) -> None:
        """Set the unsigned root_hash column of every stored checkpoint of the log to the root of the log as it is
        now stored at that size, leaving the signed notes alone."""
        rows = self.rows(log_id)
        found = self.conn.execute(text("SELECT size FROM checkpoints WHERE log_id = :log"), {"log": log_id})
        sizes = [int(size) for (size,) in found]
        frontier = Frontier.empty()
        roots = {0: frontier.root()}
        for row in rows:
            encoded = entry_bytes(log_id, row["seq"], row["kind"], row["recorded_at"], bytes(row["body"]))
            frontier, _ = frontier.append(leaf_hash(encoded))
            roots[frontier.size] = frontier.root()
        for size in sizes:
            self(
                "UPDATE checkpoints SET root_hash = :root WHERE log_id = :log AND size = :size",
                root=roots[size],
                log=log_id,
                size=size,
            )

    def truncate(self, log_id: str, size: int) -> None:
        """Drop the log's tail and shorten its head to match, so chain and head checks alone pass."""
        self("DELETE FROM entries WHERE log_id = :log AND seq >= :size", log=log_id, size=size)
        rows = self.rows(log_id)
        frontier = Frontier.empty()
        for row in rows:
            encoded = entry_bytes(log_id, row["seq"], row["kind"], row["recorded_at"], bytes(row["body"]))
            frontier, _ = frontier.append(leaf_hash(encoded))
        self.set_head(log_id, size, bytes(rows[-1]["entry_hash"]) if rows else GENESIS_HASH, frontier)

    def set_head(self, log_id: str, size: int, head_hash: bytes, frontier: Frontier) -> None:
        self(
            "UPDATE log_heads SET size = :size, head_hash = :head, frontier = :frontier WHERE log_id = :log",
            size=size,
            head=head_hash,
            frontier=frontier.encode(),
            log=log_id,
        )


@contextlib.contextmanager
def tampering(db_url: str) -> Iterator[Tamper]:
    """A trigger-bypassing connection to the database at `db_url`; commits on exit."""
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SET LOCAL session_replication_role = replica"))
            else:
                for trigger in (
                    "entries_no_update",
                    "entries_no_delete",
                    "checkpoints_no_update",
                    "checkpoints_no_delete",
                ):
                    conn.execute(text(f"DROP TRIGGER IF EXISTS {trigger}"))
            yield Tamper(conn, engine.dialect.name)
    finally:
        engine.dispose()
