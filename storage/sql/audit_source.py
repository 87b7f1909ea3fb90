"""The SQL store as `ledgerctl audit verify --database-url` reads it (client.auditor.DatabaseLogs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ledger.log.audit import PagedAuditSource
from ledger.log.entry import Entry, EntryKind, LogHead
from ledger.log.merkle import consistency_proof
from ledger.log.proofs import LogNodes
from ledger.log.signing import StoredCheckpoint
from ledger.ports import IndexColumns
from storage.sql.rollup_check import RollupCheck, VerifiedEntries, check_org_rollups, rollup_cursors_of
from storage.sql.store import open_store

_EVERY_CHECKPOINT = 2**63 - 1  # the largest BIGINT: every row


class SqlAuditSource:
    """Audit the database directly: also checks index columns and stored Merkle nodes; checkpoints from its table."""

    def __init__(self, database_url: str) -> None:
        self.store = open_store(database_url)

    def head(self, log_id: str) -> LogHead:
        return self.store.head(log_id)

    def list_logs(self, after: str, limit: int) -> list[LogHead]:
        return self.store.list_logs(after, limit)

    def audit_rows(self, log_id: str, start: int = 0) -> Iterator[tuple[Entry, IndexColumns | None, bytes | None]]:
        yield from self.store.audit_rows(log_id, start)

    def audit_pages(self, log_id: str, start: int = 0, stop: int | None = None) -> Iterator[Sequence[Sequence[Any]]]:
        return self.store.audit_pages(log_id, start, stop)

    def audit_opener(self) -> Callable[[], PagedAuditSource] | None:
        return self.store.audit_opener()

    def stored_checkpoints(self, log_id: str) -> list[StoredCheckpoint]:
        return self.store.checkpoints(log_id, _EVERY_CHECKPOINT)

    def consistency(self, log_id: str, old_size: int, new_size: int) -> list[bytes]:
        return consistency_proof(old_size, new_size, LogNodes(self.store, log_id))

    def invoiced_size(self, log_id: str) -> int | None:
        """Entries up to the log's last INVOICE entry (from ix_entries_kind): nothing after it bears on an invoice."""
        invoices = self.store.entries_of_kind(log_id, [EntryKind.INVOICE.value])
        return invoices[-1].sequence + 1 if invoices else 0

    def rollup_cursors(self) -> dict[str, tuple[int, int]] | None:
        return rollup_cursors_of(self.store)

    def check_rollups(self, org_id: str, verified: VerifiedEntries, cursor_seen: tuple[int, int] | None) -> RollupCheck:
        return check_org_rollups(self.store, org_id, verified, cursor_seen)

    def close(self) -> None:
        self.store.close()
