"""The SQL store as `ledgerctl`'s direct-database commands reach it (client.database.DatabaseAccess)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from storage.sql.audit_source import SqlAuditSource
from storage.sql.keystore import SqlKeyStore
from storage.sql.store import SqlStore, open_store


class SqlDatabaseAccess:
    """Opens (and migrates) the database at a SQLAlchemy URL for one command, and closes it afterwards."""

    @contextmanager
    def key_registry(self, url: str) -> Iterator[SqlKeyStore]:
        store = open_store(url)  # migrates the schema, so keys can be made before the first server start
        try:
            yield SqlKeyStore(store.writer)
        finally:
            store.close()

    def open_ledger(self, url: str) -> SqlStore:
        """The store itself, for export (a source) and import (a LogImporter); the caller closes it."""
        return open_store(url)

    def audit_source(self, url: str) -> SqlAuditSource:
        return SqlAuditSource(url)
