"""An in-memory LedgerStore on the same append step as the SQL store (ledger.log.append), for core tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ledger.errors import NotFound
from ledger.issued_cuts import IssuedCut, check_price_version
from ledger.log.append import EMPTY_LOG, AppendBatch, LogState, integrate, require_sizes
from ledger.log.entry import HASH_SIZE, Entry, EntryKind, LogHead
from ledger.log.merkle import stored_at
from ledger.ports import Appended, IndexColumns, NewEntry
from ledger.timeutil import Clock, system_clock


class MemoryStore:
    """Each log a list of rows (ledger.log.append.ROW_FIELDS) and its head; one lock serializes every append."""

    def __init__(self, *, clock: Clock = system_clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._rows: dict[str, list[tuple[Any, ...]]] = {}
        self._heads: dict[str, LogState] = {}
        self._keys: dict[str, dict[str, int]] = {}  # log -> idempotency key -> sequence (R24)
        self._cuts: dict[str, IssuedCut] = {}  # R12's guard: each log's latest invoice cut

    def append(self, entries: Sequence[NewEntry], *, expected_sizes: Mapping[str, int] | None = None) -> list[Appended]:
        if not entries:
            return []
        batch = AppendBatch(entries)
        with self._lock:
            heads = {log_id: self._heads.get(log_id, EMPTY_LOG) for log_id in batch.logs}
            if expected_sizes:
                require_sizes(expected_sizes, {log_id: self._size(log_id) for log_id in expected_sizes})
            stored: dict[str, dict[str, tuple[bytes, Appended]]] = {}
            for log_id, key in batch.key_pairs():
                sequence = self._keys.get(log_id, {}).get(key)
                if sequence is not None:
                    row = self._rows[log_id][sequence]
                    stored.setdefault(log_id, {})[key] = (row[4], Appended(log_id, sequence, row[6], True))
            done = integrate(batch, heads, stored, self.clock())
            for effective_from in done.price_versions:
                check_price_version(effective_from, self.latest_invoice_cut())  # R12
            for row in done.rows:
                self._rows.setdefault(row[0], []).append(row)
                if row[-1] is not None:
                    self._keys.setdefault(row[0], {})[row[-1]] = row[1]
            self._heads.update(done.heads)
            for log_id, (cut, sequence) in done.invoice_cuts.items():
                if log_id not in self._cuts or cut >= self._cuts[log_id].cut:
                    self._cuts[log_id] = IssuedCut(log_id, cut, sequence)
        return done.results

    def _size(self, log_id: str) -> int:
        return self._heads.get(log_id, EMPTY_LOG).size

    def latest_invoice_cut(self) -> IssuedCut | None:
        return max(self._cuts.values(), key=lambda c: c.cut, default=None)

    def head(self, log_id: str) -> LogHead:
        state = self._heads.get(log_id)
        if state is None:
            raise NotFound(f"no log {log_id!r}")
        return LogHead(log_id, state.size, state.head_hash, state.frontier.root())

    def list_logs(self, after: str, limit: int) -> list[LogHead]:
        return [self.head(log_id) for log_id in sorted(log for log in self._heads if log > after)[:limit]]

    def get_entry(self, log_id: str, sequence: int) -> Entry:
        rows = self._rows.get(log_id, [])
        if not 0 <= sequence < len(rows):
            raise NotFound(f"no entry {log_id}#{sequence}")
        return _entry(rows[sequence])

    def list_entries(self, log_id: str, start: int, limit: int) -> list[Entry]:
        return [_entry(row) for row in self._rows.get(log_id, [])[start : start + limit]]

    def iter_entries(self, log_id: str, start: int = 0, stop: int | None = None) -> Iterator[Entry]:
        return iter(self.list_entries(log_id, start, (stop if stop is not None else 2**63) - start))

    def entries_at(self, log_id: str, sequences: Sequence[int]) -> list[Entry]:
        rows = self._rows.get(log_id, [])
        return [_entry(rows[s]) for s in sorted(set(sequences)) if 0 <= s < len(rows)]

    def entries_of_kind(self, log_id: str, kinds: Sequence[str]) -> list[Entry]:
        return [_entry(row) for row in self._rows.get(log_id, []) if row[2] in kinds and row[2] != EntryKind.EVENT]

    def subtree_hashes(self, log_id: str, nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        rows = self._rows.get(log_id, [])
        hashes = []
        for level, index in nodes:
            sequence, position = stored_at(level, index)
            blob = rows[sequence][7] if 0 <= sequence < len(rows) else b""
            if len(blob) < (position + 1) * HASH_SIZE:
                raise NotFound(f"Merkle node missing: {log_id}#{sequence} level {position}")
            hashes.append(blob[position * HASH_SIZE : (position + 1) * HASH_SIZE])
        return hashes

    def audit_rows(self, log_id: str, start: int = 0) -> Iterator[tuple[Entry, IndexColumns, bytes]]:
        for row in self._rows.get(log_id, [])[start:]:
            yield _entry(row), IndexColumns(*row[8:]), row[7]

    def close(self) -> None:
        pass


def _entry(row: tuple[Any, ...]) -> Entry:
    log_id, seq, kind, recorded_at, body, prev_hash, entry_hash = row[:7]
    return Entry(log_id, seq, EntryKind(kind), recorded_at, body, prev_hash, entry_hash)
