"""The append step alone (ledger/log/append.py): pure, so it is tested without a store (#24)."""

from __future__ import annotations

import pytest

from ledger.errors import EventConflict, InvalidInput, LogMoved
from ledger.log.append import EMPTY_LOG, ROW_FIELDS, AppendBatch, LogState, integrate, require_sizes
from ledger.log.entry import GENESIS_HASH, EntryKind, chain_hash, entry_bytes
from ledger.log.merkle import InMemoryTree
from ledger.ports import Appended, IndexColumns, NewEntry


def _event(n: int, log_id: str = "org/acme", body: bytes | None = None) -> NewEntry:
    key = f"ev-{n}"
    return NewEntry(log_id, EntryKind.EVENT, body or f'{{"event_id":"{key}"}}'.encode(), IndexColumns(event_id=key))


def test_rows_chain_from_the_head_and_the_new_head_is_the_last_row() -> None:
    done = integrate(AppendBatch([_event(n) for n in range(5)]), {"org/acme": EMPTY_LOG}, {}, 7)
    previous, tree = GENESIS_HASH, InMemoryTree()
    for sequence, row in enumerate(done.rows):
        fields = dict(zip(ROW_FIELDS, row, strict=True))
        encoded = entry_bytes("org/acme", sequence, "EVENT", 7, fields["body"])
        assert (fields["seq"], fields["prev_hash"]) == (sequence, previous)
        assert fields["entry_hash"] == chain_hash(previous, encoded)
        tree.append(encoded)
        assert fields["subtree_hashes"] == b"".join(tree.stored_subtree_hashes(sequence))
        assert fields["event_id"] == f"ev-{sequence}"
        previous = fields["entry_hash"]
    head = done.heads["org/acme"]
    assert (head.size, head.head_hash, head.frontier.root()) == (5, previous, tree.root())
    assert done.results == [Appended("org/acme", n, done.rows[n][6], False) for n in range(5)]


def test_two_appends_build_what_one_append_of_both_builds() -> None:
    entries = [_event(n) for n in range(13)]
    whole = integrate(AppendBatch(entries), {"org/acme": EMPTY_LOG}, {}, 1)
    first = integrate(AppendBatch(entries[:6]), {"org/acme": EMPTY_LOG}, {}, 1)
    second = integrate(AppendBatch(entries[6:]), first.heads, {}, 1)
    assert first.rows + second.rows == whole.rows
    assert second.heads == whole.heads


def test_r24_a_stored_key_answers_as_a_duplicate_or_conflicts() -> None:
    stored_event = _event(1)
    prior = Appended("org/acme", 0, b"\x01" * 32, True)
    head = {"org/acme": LogState(1, b"\x01" * 32, EMPTY_LOG.frontier.extend([b"\x02" * 32])[0])}
    stored = {"org/acme": {"ev-1": (stored_event.body, prior)}}
    done = integrate(AppendBatch([stored_event, _event(2)]), head, stored, 1)
    assert done.results[0] == prior and done.results[1].sequence == 1 and len(done.rows) == 1
    with pytest.raises(EventConflict):
        integrate(AppendBatch([_event(1, body=b'{"other":1}')]), head, stored, 1)


def test_r24_a_key_repeated_in_one_batch_with_another_body_is_bad_input() -> None:
    with pytest.raises(InvalidInput) as err:
        integrate(AppendBatch([_event(1), _event(2), _event(1, body=b"{}")]), {"org/acme": EMPTY_LOG}, {}, 1)
    [violation] = err.value.violations
    assert violation.field == "events[2].event_id" and violation.reason == "EVENT_ID_REPEATED_IN_BATCH"


def test_r17_sizes_must_be_exactly_the_expected_ones() -> None:
    require_sizes({"system": 3}, {"system": 3})
    with pytest.raises(LogMoved):
        require_sizes({"system": 3}, {"system": 4})


def test_a_batch_names_its_logs_and_keys_sorted() -> None:
    batch = AppendBatch([_event(2, "org/b"), _event(1, "org/a"), _event(1, "org/b")])
    assert batch.logs == ["org/a", "org/b"]
    assert batch.key_pairs() == [("org/a", "ev-1"), ("org/b", "ev-1"), ("org/b", "ev-2")]
