"""Entries and log heads from the rows of the entries and log_heads tables, for every SQL read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.log.entry import Entry, EntryKind, LogHead
from ledger.log.merkle import Frontier
from storage.sql.schema import entries

# Bound the IN (...) lists of the idempotency lookup well under every backend's parameter limit.
LOOKUP_CHUNK = 500


ENTRY_COLUMNS = (
    entries.c.log_id,
    entries.c.seq,
    entries.c.kind,
    entries.c.recorded_at,
    entries.c.body,
    entries.c.prev_hash,
    entries.c.entry_hash,
)


def refs_from_rows(rows: Sequence[tuple[Any, ...]]) -> list[tuple[int, bytes]]:
    return [(int(seq), binary(entry_hash)) for seq, entry_hash in rows]


def binary(value: Any) -> bytes:
    """Binary columns as bytes, even when a hand edit stored text there (audit must report it, not crash)."""
    return value.encode() if isinstance(value, str) else bytes(value)


def entry_from_row(row: Sequence[Any]) -> Entry:
    """An entry from a row whose first columns are ENTRY_COLUMNS, in that order."""
    log_id, seq, kind, recorded_at, body, prev_hash, entry_hash = row[:7]
    return Entry(
        log_id=log_id,
        sequence=int(seq),
        kind=EntryKind(kind),
        recorded_at=int(recorded_at),
        body=binary(body),
        previous_hash=binary(prev_hash),
        entry_hash=binary(entry_hash),
    )


def head_from_row(row: Sequence[Any]) -> LogHead:
    log_id, size, head_hash, frontier = row
    return LogHead(log_id, int(size), bytes(head_hash), Frontier.decode(bytes(frontier)).root())
