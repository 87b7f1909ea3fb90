"""PostgreSQL: a group's commit in one statement, on the log heads this process committed last (issue #26).

The general append takes three round trips: psycopg's BEGIN, which it sends alone and waits for; the heads' lock
with R24's lookup of the batch's event IDs; then the rows, the head updates and COMMIT. Between two appends to a log
from this process nothing usually moves its head, so the store keeps each head it committed, and for a group of
plain appends (events, credits) to kept heads it calls `ledger_append_on_kept_heads` (migration 0013) once, with the
connection in autocommit so that the statement is its own transaction: the function locks the heads in log order,
inserts the rows, and moves each head from the size and hash kept. In-process on loopback, a single-event append
cost the server 307-344 us of CPU that way against 394-421 as the pipeline of five statements it replaces, whose
machinery waited on the socket eleven times per group (once here), though psycopg now dumps 20 array parameters
in Python where it dumped 7.

Nothing rests on the kept heads being right. If another writer moved a head, the function finds it elsewhere and
raises serialization_failure; rows at sequence numbers another writer filled, or an event stored already, fail on
their unique indexes. The statement then writes nothing, and the store forgets those heads and appends the general
way, which answers a stored event as a duplicate with its original entry.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ledger.log.append import LogState

_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE, without importing psycopg where SQLite is all there is
# One array per entry column (ledger.log.append.ROW_FIELDS), then one per head column; each parameter in binary.
CALL = (
    "SELECT ledger_append_on_kept_heads("
    "%b::varchar[], %b::int8[], %b::varchar[], %b::int8[], %b::bytea[], %b::bytea[], %b::bytea[], %b::bytea[], "
    "%b::varchar[], %b::varchar[], %b::varchar[], %b::varchar[], %b::int8[], %b::varchar[], "
    "%b::varchar[], %b::int8[], %b::bytea[], %b::bytea[], %b::int8[], %b::bytea[])"
)
# What a stale kept head, or an event stored already, makes the statement fail with: unique_violation (23505),
# serialization_failure (40001, the function's own when a head is not where it was kept).
STALE = frozenset({"23505", "40001"})
# Heads kept at most; beyond, the cache starts over (its logs then take the general way once).
KEPT_HEADS = 100_000


class KeptHeads:
    """The heads of logs as this process last committed them."""

    def __init__(self, limit: int = KEPT_HEADS) -> None:
        self._limit = limit
        self._heads: dict[str, LogState] = {}
        self._lock = threading.Lock()

    def of(self, logs: Iterable[str]) -> dict[str, LogState] | None:
        """The kept head of every one of `logs`, or None if one is not kept."""
        with self._lock:
            heads = self._heads
            found = {log_id: heads.get(log_id) for log_id in logs}
        if any(head is None for head in found.values()):
            return None
        return found  # type: ignore[return-value]  # no None left

    def keep(self, heads: Mapping[str, LogState]) -> None:
        with self._lock:
            if len(self._heads) + len(heads) > self._limit:
                self._heads.clear()
            self._heads.update(heads)

    def forget(self, logs: Iterable[str]) -> None:
        with self._lock:
            for log_id in logs:
                self._heads.pop(log_id, None)


def has_no_transaction(driver: Any) -> bool:
    """Whether a psycopg connection holds no transaction (what commit_on_kept_heads needs: its statement is one)."""
    return bool(driver.info.transaction_status == _IDLE)


def commit_on_kept_heads(
    driver: Any, rows: Sequence[tuple[Any, ...]], kept: Mapping[str, LogState], moved: Mapping[str, LogState]
) -> None:
    """On a psycopg connection with no transaction open, one statement: lock `moved`'s heads, insert `rows`
    (ROW_FIELDS), move each head of `moved` from its `kept` state. Raises the driver's error, with nothing written
    and no transaction left open, if any of it fails (a stale head: an error whose sqlstate is in STALE).

    The connection is in autocommit mode for the statement, so that it is its own transaction: psycopg would
    otherwise send a BEGIN first and wait for the answer, a round trip of its own, then a COMMIT. Autocommit is off
    again before this returns, whatever happens, or the connection is closed."""
    names = sorted(moved)
    new = [moved[log_id] for log_id in names]
    before = [kept[log_id] for log_id in names]
    columns = [list(column) for column in zip(*rows, strict=True)]
    heads = (
        names,
        [head.size for head in new],
        [head.head_hash for head in new],
        [head.frontier.encode() for head in new],
        [head.size for head in before],
        [head.head_hash for head in before],
    )
    driver.autocommit = True
    try:
        with driver.cursor() as cursor:
            cursor.execute(CALL, (*columns, *heads))
    finally:
        try:
            driver.autocommit = False
        except Exception:
            driver.close()  # never back in the pool able to commit statement by statement
            raise
