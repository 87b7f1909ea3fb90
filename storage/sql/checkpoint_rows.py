"""The checkpoints table: signed checkpoint notes stored and read (ledger.log.signing)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from ledger.log.signing import CheckpointConflict, StoredCheckpoint
from storage.sql import faults
from storage.sql import schema as _schema
from storage.sql.connections import SqlConnections
from storage.sql.driver import DriverQuery
from storage.sql.entry_rows import binary


class CheckpointRows(SqlConnections):
    """Signed checkpoints, appended per log in size order and read back."""

    def latest_checkpoint(self, log_id: str) -> StoredCheckpoint | None:
        """The log's checkpoint of the largest size, or None."""
        rows = self._read(_LATEST_CHECKPOINT, {"log_id": log_id})
        return checkpoint_from_row(rows[0]) if rows else None

    def checkpoints(self, log_id: str, max_size: int) -> list[StoredCheckpoint]:
        """The log's checkpoints of sizes up to `max_size`, smallest first (an export carries them)."""
        table = _schema.checkpoints
        with self.reading() as conn:
            rows = conn.execute(
                select(table).where(table.c.log_id == log_id, table.c.size <= max_size).order_by(table.c.size)
            ).all()
        return [checkpoint_from_row(row) for row in rows]

    def checkpoint_page(self, log_id: str, start_size: int, limit: int) -> list[StoredCheckpoint]:
        """Up to `limit` of the log's checkpoints of sizes from `start_size` on, smallest first."""
        table = _schema.checkpoints
        with self.reading() as conn:
            rows = conn.execute(
                select(table)
                .where(table.c.log_id == log_id, table.c.size >= start_size)
                .order_by(table.c.size)
                .limit(limit)
            ).all()
        return [checkpoint_from_row(row) for row in rows]

    def checkpoint_at(self, log_id: str, size: int) -> StoredCheckpoint | None:
        table = _schema.checkpoints
        with self.reading() as conn:
            row = conn.execute(select(table).where(table.c.log_id == log_id, table.c.size == size)).one_or_none()
        return None if row is None else checkpoint_from_row(row)

    def add_checkpoint(self, checkpoint: StoredCheckpoint, previous_size: int | None) -> None:
        """Append a checkpoint if the newest stored one of its log still has `previous_size` (None: none stored).

        Per-log serialization: PostgreSQL takes a transaction-scoped advisory lock on the log, SQLite's writer
        transactions (BEGIN IMMEDIATE) hold the database lock. So two signers never both extend the same newest
        checkpoint, and every stored checkpoint was checked against the one before it.
        """
        table = _schema.checkpoints
        try:
            with self.writer.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(hashtext('usage-ledger checkpoints ' || :log_id))"),
                        {"log_id": checkpoint.log_id},
                    )
                newest = conn.execute(
                    select(sa.func.max(table.c.size)).where(table.c.log_id == checkpoint.log_id)
                ).scalar_one_or_none()
                if newest != previous_size:
                    raise CheckpointConflict(
                        f"log {checkpoint.log_id}: newest checkpoint is now of size {newest}, not {previous_size}"
                    )
                conn.execute(
                    table.insert().values(
                        log_id=checkpoint.log_id,
                        size=checkpoint.size,
                        root_hash=checkpoint.root_hash,
                        note=checkpoint.note,
                        signed_at=checkpoint.signed_at,
                    )
                )
        except sa.exc.IntegrityError as err:  # a concurrent signer of the same size, on a backend without the lock
            raise CheckpointConflict(f"log {checkpoint.log_id}: size {checkpoint.size} was signed meanwhile") from err
        except OperationalError as err:
            raise faults.translated(err) from err


_LATEST_CHECKPOINT = DriverQuery(
    select(*_schema.checkpoints.c)
    .where(_schema.checkpoints.c.log_id == sa.bindparam("log_id"))
    .order_by(_schema.checkpoints.c.size.desc())
    .limit(1)
)


def checkpoint_from_row(row: Sequence[Any]) -> StoredCheckpoint:
    log_id, size, root_hash, note, signed_at = row
    return StoredCheckpoint(log_id, int(size), binary(root_hash), str(note), int(signed_at))
