"""Import's writer: verified entries, their heads and checkpoints into an empty database, in one transaction.

ledger.export checks every line (ledger.log.replay); this only persists what it hands over, the one writer of
the log besides the append path (storage.sql.store).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from ledger.errors import StorageError
from ledger.export import ImportTargetNotEmpty, VerifiedEntry, VerifiedLog
from ledger.issued_cuts import keep_latest_cut
from ledger.log.entry import EntryKind
from storage.sql.schema import checkpoints as checkpoint_table
from storage.sql.schema import entries, log_heads

if TYPE_CHECKING:
    from storage.sql.store import SqlStore

# Rows per INSERT: large enough to amortise round trips, small enough to keep memory flat on long logs.
_INSERT_CHUNK = 1000


def import_logs(store: SqlStore, logs: Sequence[VerifiedLog], verified: Iterator[VerifiedEntry]) -> int:
    """Insert `verified` (the entries of `logs`, pre-hashed, checked as they come) exactly as exported, with the
    logs' heads and checkpoints; returns the count. It bypasses SqlStore.append, which would hash anew with a new
    recorded time. Any error, a check failing in `verified` included, rolls the whole import back."""
    count = 0
    try:
        with store.writer.begin() as conn:
            _require_absent(conn, [log.head.log_id for log in logs])
            # Heads first: on PostgreSQL a server appending to the same log meanwhile waits on these rows and
            # then continues the imported chain, rather than racing to write entry 0.
            conn.execute(
                log_heads.insert(),
                [
                    {
                        "log_id": log.head.log_id,
                        "size": log.head.size,
                        "head_hash": log.head.head_hash,
                        "frontier": log.frontier.encode(),
                    }
                    for log in logs
                ],
            )
            rows: list[dict[str, Any]] = []
            cuts: dict[str, tuple[int, int]] = {}  # R12's guard reads each log's latest invoice cut
            for item in verified:
                rows.append(_row(item))
                count += 1
                if item.entry.kind is EntryKind.INVOICE:
                    keep_latest_cut(cuts, item.entry.log_id, item.entry.body, item.entry.sequence)
                if len(rows) >= _INSERT_CHUNK:
                    conn.execute(entries.insert(), rows)
                    rows = []
            if rows:
                conn.execute(entries.insert(), rows)
            if cuts:
                store.record_invoice_cuts(conn, [(log_id, cut, seq) for log_id, (cut, seq) in cuts.items()])
            signed = [c for log in logs for c in log.checkpoints]
            if signed:
                conn.execute(
                    checkpoint_table.insert(),
                    [
                        {
                            "log_id": c.log_id,
                            "size": c.size,
                            "root_hash": c.root_hash,
                            "note": c.note,
                            "signed_at": c.signed_at,
                        }
                        for c in signed
                    ],
                )
    except IntegrityError as err:
        raise ImportTargetNotEmpty(
            f"another writer created one of the file's logs during the import; nothing was imported ({err.orig})"
        ) from err
    except OperationalError as err:
        raise StorageError(f"the database did not take the import ({err.orig}); nothing was imported") from err
    return count


def _require_absent(conn: Connection, log_ids: Iterable[str]) -> None:
    wanted = sorted(log_ids)
    present = set(conn.execute(select(log_heads.c.log_id).where(log_heads.c.log_id.in_(wanted))).scalars())
    # Entries without a head would be damage, not a log; refuse those too rather than interleave with them.
    present |= set(
        conn.execute(select(entries.c.log_id).where(entries.c.log_id.in_(wanted)).group_by(entries.c.log_id)).scalars()
    )
    if present:
        counts: dict[str, int] = dict(
            conn.execute(
                select(entries.c.log_id, func.count()).where(entries.c.log_id.in_(present)).group_by(entries.c.log_id)
            ).all()
        )
        listed = ", ".join(f"{log} ({counts.get(log, 0)} entries)" for log in sorted(present))
        raise ImportTargetNotEmpty(
            f"the target already holds {listed}; import only into a database that has none of the file's logs"
        )


def _row(item: VerifiedEntry) -> dict[str, Any]:
    entry, index = item.entry, item.index
    return {
        "log_id": entry.log_id,
        "seq": entry.sequence,
        "kind": entry.kind.value,
        "recorded_at": entry.recorded_at,
        "body": entry.body,
        "prev_hash": entry.previous_hash,
        "entry_hash": entry.entry_hash,
        "subtree_hashes": item.subtree_hashes,
        "event_id": index.event_id,
        "org_id": index.org_id,
        "endpoint_id": index.endpoint_id,
        "workload_id": index.workload_id,
        "request_id": index.request_id,
        "occurred_at": index.occurred_at,
    }
