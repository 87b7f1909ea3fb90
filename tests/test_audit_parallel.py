"""Audit verification split with a helper process gives exactly the single-process answer, tampered or not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from ledger.intake import Ledger
from ledger.log import audit, merkle
from ledger.log.proofs import LogNodes
from storage.sql import SqlStore
from tests.conftest import EventFactory

LOG = "org/acme"
SIZE = 200
SEAM = 100  # the helper takes [100, 200)


@pytest.fixture
def filled(ledger: Ledger, make_event: EventFactory) -> Ledger:
    events = [
        make_event(
            type="REQUEST_STARTED",
            request_id=f"req-{i:04d}",
            occurred_at=f"2026-10-05T09:{i // 60:02d}:{i % 60:02d}.{i * 7919 % 1_000_000:06d}Z",
        )
        for i in range(SIZE)
    ]
    ledger.append_events(events)
    assert ledger.store.head(LOG).size == SIZE
    return ledger


def _store(ledger: Ledger) -> SqlStore:
    store = ledger.store
    assert isinstance(store, SqlStore)
    return store


def _tamper(store: SqlStore, statement: str, **params: Any) -> None:
    """Write around the append-only triggers, as an attacker with database access could."""
    with store.writer.begin() as conn:
        if store.dialect == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS entries_no_update"))
            conn.execute(text("DROP TRIGGER IF EXISTS entries_no_delete"))
        conn.execute(text(statement), params)


def _column(store: SqlStore, column: str, seq: int) -> Any:
    with store.reader.connect() as conn:
        return conn.execute(
            text(f"SELECT {column} FROM entries WHERE log_id = :log AND seq = :seq"), {"log": LOG, "seq": seq}
        ).scalar_one()


def _single_and_split(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch, helped: list[bool] | None = None
) -> audit.LogVerification:
    """Verify in one process, then with a helper, and require the same outcome field by field."""
    monkeypatch.setattr(audit, "PARALLEL_FROM", 1 << 62)
    single = audit.verify_log(store, LOG)
    result = audit._Helper.result

    def spy(self: audit._Helper) -> Any:
        answer = result(self)
        if helped is not None:
            helped.append(answer is not None)
        return answer

    monkeypatch.setattr(audit._Helper, "result", spy)
    monkeypatch.setattr(audit, "PARALLEL_FROM", 10)
    monkeypatch.setattr(audit, "_seam", lambda size: SEAM)
    split = audit.verify_log(store, LOG)
    assert split == single
    return single


def test_a_log_verified_with_a_helper_matches_one_process(filled: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    helped: list[bool] = []
    outcome = _single_and_split(_store(filled), monkeypatch, helped)
    assert helped == [True]  # the helper did its half
    head = filled.store.head(LOG)
    assert outcome.ok and (outcome.size, outcome.root_hash, outcome.head_hash) == (SIZE, head.root_hash, head.head_hash)


def _flip_last(value: bytes) -> bytes:
    return value[:-1] + bytes([value[-1] ^ 1])


# (what is tampered, sequence, the first bad entry, message)
Tampering = Callable[[SqlStore], None]


def _body(seq: int) -> Tampering:
    return lambda s: _tamper(
        s, f"UPDATE entries SET body = :v WHERE seq = {seq}", v=_flip_last(_column(s, "body", seq))
    )


def _hash(column: str, seq: int) -> Tampering:
    def change(s: SqlStore) -> None:
        _tamper(s, f"UPDATE entries SET {column} = :v WHERE seq = {seq}", v=_flip_last(_column(s, column, seq)))

    return change


def _delete(seq: int) -> Tampering:
    return lambda s: _tamper(s, f"DELETE FROM entries WHERE log_id = '{LOG}' AND seq = {seq}")


CASES: list[tuple[str, Tampering, int, str]] = [
    ("body left of the seam", _body(50), 50, "stored hash does not match its bytes"),
    ("body at the seam", _body(100), 100, "stored hash does not match its bytes"),
    ("body right of the seam", _body(150), 150, "stored hash does not match its bytes"),
    ("entry hash before the seam", _hash("entry_hash", 99), 99, "stored hash does not match its bytes"),
    ("previous hash at the seam", _hash("prev_hash", 100), 100, "previous hash does not match entry #99's hash"),
    ("row before the seam deleted", _delete(99), 99, "entry org/acme#99 is missing (next stored is #100)"),
    ("row at the seam deleted", _delete(100), 100, "entry org/acme#100 is missing (next stored is #101)"),
    ("last row deleted", _delete(199), 199, "head says 200 entries but 199 are stored"),
    # Leaf 103 closes the 8-leaf subtree 96..103 and leaf 127 the 128-leaf one 0..127: both span the seam.
    ("node spanning the seam", _hash("subtree_hashes", 103), 103, "stored Merkle subtree hashes do not match"),
    ("top node spanning the seam", _hash("subtree_hashes", 127), 127, "stored Merkle subtree hashes do not match"),
    ("node right of the seam", _hash("subtree_hashes", 101), 101, "stored Merkle subtree hashes do not match"),
    ("leaf right of the seam", _hash("subtree_hashes", 150), 150, "stored Merkle subtree hashes do not match"),
    (
        "index column right of the seam",
        lambda s: _tamper(s, "UPDATE entries SET request_id = 'req-x' WHERE seq = 160"),
        160,
        "index columns differ from the body",
    ),
]


@pytest.mark.parametrize(("case", "change", "sequence", "message"), CASES, ids=[c[0] for c in CASES])
def test_a_tampered_log_fails_alike_with_or_without_a_helper(
    filled: Ledger,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    change: Tampering,
    sequence: int,
    message: str,
) -> None:
    store = _store(filled)
    change(store)
    outcome = _single_and_split(store, monkeypatch)
    assert not outcome.ok and outcome.failed_sequence == sequence, outcome
    assert message in (outcome.failure or "")


def test_a_two_faults_report_the_first_even_when_the_helper_meets_its_own_first(
    filled: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(filled)
    _hash("subtree_hashes", 127)(store)
    _body(140)(store)  # the helper stops here, after deferring 127's spanning node
    outcome = _single_and_split(store, monkeypatch)
    assert outcome.failed_sequence == 127


def test_no_helper_for_a_database_in_memory() -> None:
    store = SqlStore("sqlite:///:memory:")
    try:
        assert store.audit_opener() is None
    finally:
        store.close()


def test_roots_at_sizes_on_both_sides_of_the_seam_match_the_stored_tree(
    filled: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(filled)
    sizes = {1, 50, 99, 100, 101, 104, 127, 128, 150, 200}
    monkeypatch.setattr(audit, "PARALLEL_FROM", 10)
    monkeypatch.setattr(audit, "_seam", lambda size: SEAM)
    split = audit.verify_log(store, LOG, roots_at=sizes)
    monkeypatch.setattr(audit, "PARALLEL_FROM", 1 << 62)
    single = audit.verify_log(store, LOG, roots_at=sizes)
    nodes = LogNodes(store, LOG)
    assert split.roots == single.roots == {size: merkle.root_at(size, nodes) for size in sizes}
