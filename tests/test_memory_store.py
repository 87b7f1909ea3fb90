"""The in-memory store (storage/memory.py): the core's append, R24 and chain tests run on it too, and for the same
entries it holds byte for byte the chains, subtree hashes and roots the SQL store holds (one append step, #24)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledger.errors import LogMoved
from ledger.intake import Ledger
from ledger.log.append import ROW_FIELDS
from ledger.log.audit import verify
from ledger.log.entry import SYSTEM_LOG, EntryKind
from ledger.log.merkle import consistency_proof, root_at
from ledger.log.note import Checkpoint, NoteSigner, NoteVerifier, generate_signer_key, sign_checkpoint
from ledger.log.proofs import LogNodes, SignedCheckpoint, prove_entries
from ledger.ports import IndexColumns, LedgerStore, NewEntry
from storage.memory import MemoryStore
from storage.sql import SqlStore
from tests.conftest import EventFactory, FixedClock
from tests.test_store import (  # the same tests, collected here again against the memory store's `ledger`
    test_a_batch_across_orgs_is_atomic_and_results_keep_request_order,
    test_a_new_ledger_starts_with_the_default_price_book_r11,
    test_an_invalid_event_rejects_the_whole_batch,
    test_concurrent_appenders_leave_every_chain_linear_and_gap_free,
    test_entries_chain_from_genesis_and_sequence_without_gaps,
    test_event_ids_are_scoped_per_org,
    test_r24_duplicate_event_answers_with_the_original_entry,
    test_r24_same_event_id_with_other_content_is_a_conflict_and_appends_nothing,
    test_r24_same_event_twice_in_one_batch_appends_once,
)

__all__ = [
    "test_a_batch_across_orgs_is_atomic_and_results_keep_request_order",
    "test_a_new_ledger_starts_with_the_default_price_book_r11",
    "test_an_invalid_event_rejects_the_whole_batch",
    "test_concurrent_appenders_leave_every_chain_linear_and_gap_free",
    "test_entries_chain_from_genesis_and_sequence_without_gaps",
    "test_event_ids_are_scoped_per_org",
    "test_r24_duplicate_event_answers_with_the_original_entry",
    "test_r24_same_event_id_with_other_content_is_a_conflict_and_appends_nothing",
    "test_r24_same_event_twice_in_one_batch_appends_once",
]

SIGNER = NoteSigner(generate_signer_key("usage-ledger.local"))


@pytest.fixture
def ledger(clock: FixedClock) -> Ledger:
    """This module's tests, and test_store's imported above, run on the memory store."""
    return Ledger(MemoryStore(clock=clock), clock=clock)


def _batches(make_event: EventFactory) -> Iterator[list[dict[str, object]]]:
    """Batches across orgs with repeats (R24), sized to close Merkle subtrees of several heights."""
    sent: list[dict[str, object]] = []
    for size in (1, 2, 7, 3, 16, 5):
        batch = [make_event(org_id=("acme" if i % 3 else "beta")) for i in range(size)]
        if sent:
            batch.append(dict(sent[-1]))  # a duplicate of the previous batch's last event
        sent = batch
        yield batch


def test_the_sql_and_memory_stores_hold_byte_identical_chains_and_roots(
    db_url: str, clock: FixedClock, make_event: EventFactory
) -> None:
    sql_store = SqlStore(db_url, clock=clock)
    stores: list[LedgerStore] = [sql_store, MemoryStore(clock=clock)]
    try:
        ledgers = [Ledger(store, clock=clock) for store in stores]
        for batch in _batches(make_event):
            results = [ledger.append_events([dict(event) for event in batch]) for ledger in ledgers]
            assert results[0] == results[1]
            clock.advance(1_000)
        heads = [store.list_logs("", 10) for store in stores]
        assert heads[0] == heads[1] and [h.log_id for h in heads[0]] == ["org/acme", "org/beta", SYSTEM_LOG]
        for head in heads[0]:
            rows = [list(store.audit_rows(head.log_id)) for store in stores]
            assert rows[0] == rows[1] and len(rows[0]) == head.size
            nodes = [LogNodes(store, head.log_id) for store in stores]
            for size in range(head.size + 1):
                assert root_at(size, nodes[0]) == root_at(size, nodes[1])
            if head.size > 1:
                assert consistency_proof(1, head.size, nodes[0]) == consistency_proof(1, head.size, nodes[1])
        assert len(ROW_FIELDS) == 14  # the entry's 7 columns, its subtree hashes and 6 index columns
    finally:
        sql_store.close()


def test_proofs_from_the_memory_store_verify(ledger: Ledger, make_event: EventFactory) -> None:
    ledger.append_events([make_event() for _ in range(11)])
    head = ledger.store.head("org/acme")
    note = sign_checkpoint(Checkpoint("usage-ledger.local/org/acme", head.size, head.root_hash), SIGNER)
    signed = SignedCheckpoint.parse("org/acme", note)
    assert isinstance(ledger.store, MemoryStore)
    bundle = prove_entries(ledger.store, "org/acme", [0, 5, 10], signed)
    assert bundle.verify(NoteVerifier(SIGNER.verifier_key), "usage-ledger.local").size == 11
    assert verify(ledger.store).ok


def test_a_conditional_append_appends_only_onto_the_sizes_it_names_r17(ledger: Ledger) -> None:
    entry = NewEntry(SYSTEM_LOG, EntryKind.STATE, b"{}", IndexColumns())
    with pytest.raises(LogMoved):
        ledger.store.append([entry], expected_sizes={SYSTEM_LOG: 0})
    [appended] = ledger.store.append([entry], expected_sizes={SYSTEM_LOG: 1})
    assert appended.sequence == 1
