"""PostgreSQL: a group's commit in one round trip, on the log heads this process committed last (issue #26).

The general append takes three: psycopg's BEGIN, which it sends alone and waits for; the heads' lock with R24's
lookup of the batch's event IDs; then the rows, the head updates and COMMIT. Between two appends to a log from this
process nothing usually moves its head, so the store keeps each head it committed, and for a group of plain appends
(events, credits) to kept heads it sends everything at once: BEGIN, lock the heads, insert the rows, move each head
from the size and hash kept, COMMIT. In-process on loopback, a group of six single-event appends cost 506 us of CPU
and 0.82 ms against 619 us and 1.02 ms the general way; to a database across a network, each round trip saved is a
network round trip too.

Nothing rests on the kept heads being right. If another writer moved a head, the head update finds it elsewhere
and fails on purpose (a division by zero), or the rows collide with the entries at those sequence numbers; an event
stored already collides with ux_entries_event_id (R24). PostgreSQL then skips the rest of the pipeline, COMMIT
included, so nothing is written, and the store rolls back, forgets those heads and appends the general way, which
answers a stored event as a duplicate with its original entry.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ledger.log.append import LogState

# The writer's transactions, as psycopg begins them for the store's engine.
BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE, without importing psycopg where SQLite is all there is
# The heads go first, locked in log order as the general append locks them, so the two never deadlock.
LOCK_HEADS = "SELECT log_id FROM log_heads WHERE log_id = ANY(%s) ORDER BY log_id FOR UPDATE"
# Every head moves from the size and hash kept, or the statement fails and the pipeline's COMMIT never runs.
MOVE_HEADS = (
    "WITH moved AS (UPDATE log_heads AS h SET size = n.size, head_hash = n.head_hash, frontier = n.frontier "
    "FROM unnest(%b::varchar[], %b::int8[], %b::bytea[], %b::bytea[], %b::int8[], %b::bytea[]) "
    "AS n(log_id, size, head_hash, frontier, kept_size, kept_hash) "
    "WHERE h.log_id = n.log_id AND h.size = n.kept_size AND h.head_hash = n.kept_hash RETURNING 1) "
    "SELECT 1 / ((SELECT count(*) FROM moved) = %b)::int"
)
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


def statements(insert: str) -> str:
    """The pipeline's statements, for its SQL span (the rows' INSERT named once)."""
    return f"{BEGIN};\n{LOCK_HEADS};\n{insert};\n{MOVE_HEADS};\nCOMMIT"


def has_no_transaction(driver: Any) -> bool:
    """Whether a psycopg connection holds no transaction (what commit_on_kept_heads needs to begin its own)."""
    return bool(driver.info.transaction_status == _IDLE)


def commit_on_kept_heads(
    driver: Any,
    logs: Sequence[str],
    inserts: Sequence[tuple[str, tuple[Any, ...]]],
    kept: Mapping[str, LogState],
    moved: Mapping[str, LogState],
) -> None:
    """On a psycopg connection with no transaction open, in one pipeline: BEGIN, lock `logs`' heads, run `inserts`
    (SQL, parameters), move each head of `moved` from its `kept` state, COMMIT. Raises the driver's error, with
    nothing committed and no transaction left open, if any of it fails.

    The connection is in autocommit mode for the pipeline, which holds its own BEGIN: psycopg would otherwise send
    its BEGIN first and wait for the answer, a round trip of its own. Autocommit is off again before this returns,
    whatever happens, or the connection is closed."""
    names = sorted(moved)
    new = [moved[log_id] for log_id in names]
    before = [kept[log_id] for log_id in names]
    driver.autocommit = True
    try:
        with driver.pipeline(), driver.cursor() as cursor:
            cursor.execute(BEGIN)
            cursor.execute(LOCK_HEADS, (list(logs),))
            for sql, params in inserts:
                cursor.execute(sql, params)
            cursor.execute(
                MOVE_HEADS,
                (
                    names,
                    [head.size for head in new],
                    [head.head_hash for head in new],
                    [head.frontier.encode() for head in new],
                    [head.size for head in before],
                    [head.head_hash for head in before],
                    len(names),
                ),
            )
            cursor.execute("COMMIT")
    except BaseException:
        if not driver.closed:
            # The failed pipeline's transaction, which autocommit would not end. psycopg's own rollback, not a
            # ROLLBACK statement: it also resets psycopg's record of the statements it prepared, which after an
            # explicit ROLLBACK was out of step with PostgreSQL's (four servers on one database met "prepared
            # statement does not exist" on their next append).
            driver.rollback()
        raise
    finally:
        try:
            driver.autocommit = False
        except Exception:
            driver.close()  # never back in the pool able to commit statement by statement
            raise
