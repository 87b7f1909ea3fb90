"""ledgerctl in-process as the installed command composes it (ledgerctl/main.py), with the SQL database access."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner, Result

from storage.sql.database_access import SqlDatabaseAccess


class LedgerctlRunner(CliRunner):
    """A CliRunner whose commands get the database access `ledgerctl`'s entry point passes (client/database.py)."""

    def invoke(self, cli: Any, args: Any = None, **extra: Any) -> Result:  # type: ignore[override]
        extra.setdefault("obj", SqlDatabaseAccess())
        return super().invoke(cli, args, **extra)
