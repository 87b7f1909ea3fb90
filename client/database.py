"""The port through which `ledgerctl`'s direct-database commands reach the ledger's database (docs/adr/0005-layers.md).

`ledgerctl keys`, `export`/`import` and `audit verify --database-url` open the database instead of calling a
server. The client imports no storage (its library must load no SQL driver), so these commands are handed a
DatabaseAccess by the command line's composition root (ledgerctl/main.py) as the Click context object.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

import typer

from client.output import EXIT_USAGE, fail
from ledger.api_keys import ApiKey
from ledger.export import ExportSource
from ledger.ports import LogImporter

if TYPE_CHECKING:
    from client.auditor import DatabaseLogs


class KeyRegistry(Protocol):
    """API key records, as `ledgerctl keys` manages them (the server only reads them)."""

    def add(self, key: ApiKey) -> None: ...

    def list_keys(self) -> list[ApiKey]: ...

    def revoke(self, key_id: str, at: int) -> ApiKey:
        """Raises NotFound for an unknown key id; revoking twice keeps the first revocation time."""
        ...


class LedgerDatabase(ExportSource, LogImporter, Protocol):
    """The ledger's store opened for `ledgerctl export` (a source) and `ledgerctl import` (a writer)."""

    def close(self) -> None: ...


class DatabaseAccess(Protocol):
    """Opens the ledger's database at a URL (migrating its schema first); each raises LedgerError when it cannot."""

    def key_registry(self, url: str) -> AbstractContextManager[KeyRegistry]: ...

    def open_ledger(self, url: str) -> LedgerDatabase: ...

    def audit_source(self, url: str) -> DatabaseLogs: ...


def database_access(context: typer.Context, as_json: bool) -> DatabaseAccess:
    """The DatabaseAccess the composition root passed in; a usage error (exit 2) when run without one."""
    access: DatabaseAccess | None = context.find_root().obj  # Click keeps the object untyped
    if access is None:
        fail(
            "this command opens the ledger's database directly: run it with the `ledgerctl` command "
            "(python -m ledgerctl), whose entry point provides the database access",
            EXIT_USAGE,
            as_json=as_json,
        )
    return access
