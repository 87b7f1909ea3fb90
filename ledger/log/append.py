"""The append step, pure: from the heads of the logs a batch touches and their stored idempotency keys, the rows
to write, the new heads and each entry's result. Every store persists what `integrate` returns and nothing else,
so the chain hash, the Merkle update and R24's decisions have one implementation (as Tessera's `Integrate`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, NoReturn

from ledger.errors import EventConflict, FieldViolation, InvalidInput, LogMoved
from ledger.issued_cuts import keep_latest_cut, price_version_start
from ledger.log.entry import GENESIS_HASH, EntryKind, chain_hash, entry_encoder, org_of_log
from ledger.log.merkle import Frontier, leaf_hash
from ledger.ports import Appended, NewEntry

__all__ = [
    "ROW_FIELDS",
    "AppendBatch",
    "Integrated",
    "LogState",
    "StoredKeys",
    "integrate",
    "require_sizes",
]

# The fields of a row `integrate` returns, in order: the entry, its subtree hashes, then its IndexColumns.
ROW_FIELDS = (
    "log_id",
    "seq",
    "kind",
    "recorded_at",
    "body",
    "prev_hash",
    "entry_hash",
    "subtree_hashes",
    "org_id",
    "endpoint_id",
    "workload_id",
    "request_id",
    "occurred_at",
    "event_id",
)


class LogState(NamedTuple):
    """A log's head as the append step needs it: its size, the hash of its last entry and its Merkle frontier."""

    size: int
    head_hash: bytes
    frontier: Frontier


EMPTY_LOG = LogState(0, GENESIS_HASH, Frontier.empty())

# Per log, the entries already stored under the batch's idempotency keys: key -> (stored body, its result with
# duplicate=True), as the store looked them up (R24).
StoredKeys = Mapping[str, Mapping[str, tuple[bytes, Appended]]]

_EVENT = EntryKind.EVENT
# The kind column's text for each kind (a dict lookup, not the enum's `value` descriptor, on every entry).
_KIND_TEXT = {kind: kind.value for kind in EntryKind}


class AppendBatch:
    """New entries grouped by log, and what a store must read before `integrate`: `logs` (sorted, the order to lock
    their heads in) and `key_pairs()` (sorted (log id, idempotency key) pairs to look up)."""

    __slots__ = ("by_log", "entries", "logs")

    def __init__(self, entries: Sequence[NewEntry]) -> None:
        by_log: defaultdict[str, list[int]] = defaultdict(list)
        for position, item in enumerate(entries):
            by_log[item.log_id].append(position)
        self.entries = entries
        self.by_log: dict[str, list[int]] = by_log
        self.logs = sorted(by_log)

    def key_pairs(self) -> list[tuple[str, str]]:
        entries = self.entries
        return sorted(
            {
                (log_id, key)
                for log_id, positions in self.by_log.items()
                for p in positions
                if (key := entries[p].index.event_id) is not None
            }
        )


class Integrated(NamedTuple):
    """What one append writes: entry rows (ROW_FIELDS), each written log's new head, and the results in the order
    of the batch; `invoice_cuts` (log -> (cut, sequence) of its latest new INVOICE) and `price_versions` (when each
    new PRICE_BOOK takes effect) are for R12's guard, which the store applies under its own locks."""

    rows: list[tuple[Any, ...]]
    heads: dict[str, LogState]
    results: list[Appended]
    invoice_cuts: dict[str, tuple[int, int]]
    price_versions: list[int]


def require_sizes(expected_sizes: Mapping[str, int], actual: Mapping[str, int]) -> None:
    """R17's conditional append: LogMoved unless each named log holds exactly the expected number of entries."""
    for log_id, expected in expected_sizes.items():
        if actual[log_id] != expected:
            raise LogMoved(log_id, expected, actual[log_id])


def integrate(batch: AppendBatch, heads: Mapping[str, LogState], stored: StoredKeys, recorded_at: int) -> Integrated:
    """The append of `batch` onto `heads` (one per log of the batch), all of it or, by raising, none of it.

    Entries whose idempotency key is stored already, or earlier in the batch, with the same body answer as
    duplicates of it (R24); with another body the batch raises EventConflict (stored) or InvalidInput (in the batch).
    """
    new_entries = batch.entries
    results: list[Appended | None] = [None] * len(new_entries)
    rows: list[tuple[Any, ...]] = []
    cuts: dict[str, tuple[int, int]] = {}
    versions: list[int] = []
    new_heads: dict[str, LogState] = {}
    for log_id in batch.logs:
        size, head_hash, frontier = heads[log_id]
        known = stored.get(log_id) or {}
        batch_seen: dict[str, tuple[bytes, Appended]] = {}
        encode = None
        # New entries of this log as (row without its subtree hashes, index columns); their Merkle leaves are
        # added in one Frontier.extend below, which hashes exactly what one append per leaf would.
        fresh: list[tuple[tuple[Any, ...], tuple[Any, ...]]] = []
        leaves: list[bytes] = []
        for position in batch.by_log[log_id]:
            item = new_entries[position]
            index = item.index
            key = index.event_id
            if key is not None:
                prior = known.get(key) or batch_seen.get(key)
                if prior is not None:
                    prior_body, prior_result = prior
                    if prior_body != item.body:
                        _conflict(log_id, key, prior_result, position, key in known, new_entries)
                    results[position] = Appended(log_id, prior_result.sequence, prior_result.entry_hash, True)
                    continue
            if encode is None:
                encode = entry_encoder(log_id)
            kind = _KIND_TEXT[item.kind]
            body = item.body
            encoded = encode(size, kind, recorded_at, body)
            entry_hash = chain_hash(head_hash, encoded)
            leaves.append(leaf_hash(encoded))
            fresh.append(((log_id, size, kind, recorded_at, body, head_hash, entry_hash), index))
            appended = Appended(log_id, size, entry_hash, False)
            results[position] = appended
            if key is not None:
                batch_seen[key] = (body, appended)
            if item.kind is not _EVENT:  # one comparison per event on the ingest path
                if item.kind is EntryKind.INVOICE:
                    keep_latest_cut(cuts, log_id, body, size)
                elif item.kind is EntryKind.PRICE_BOOK:
                    versions.append(price_version_start(body))
            head_hash = entry_hash
            size += 1
        if fresh:
            frontier, subtrees = frontier.extend(leaves)
            join = b"".join
            rows.extend(
                (*columns, join(nodes), *index) for (columns, index), nodes in zip(fresh, subtrees, strict=True)
            )
            new_heads[log_id] = LogState(size, head_hash, frontier)
    return Integrated(rows, new_heads, [r for r in results if r is not None], cuts, versions)


def _conflict(
    log_id: str, event_id: str, prior: Appended, position: int, stored: bool, batch: Sequence[NewEntry]
) -> NoReturn:
    """R24: raise for an event_id whose body differs from the one it first came with.

    Stored before: EventConflict naming the stored entry. Earlier in this same batch: the batch contradicts
    itself, so it is bad input naming both events (the log holds neither; "already in the log" would be false).
    """
    if stored:
        raise EventConflict(org_of_log(log_id) or log_id, event_id, prior.sequence, prior.entry_hash)
    first = next(p for p, item in enumerate(batch) if item.log_id == log_id and item.index.event_id == event_id)
    raise InvalidInput(
        [
            FieldViolation(
                f"events[{position}].event_id",
                f"R24: {event_id!r} is also events[{first}].event_id in this batch, with a different body; "
                "nothing was appended (one event_id names one fact)",
                "EVENT_ID_REPEATED_IN_BATCH",
            )
        ]
    )
