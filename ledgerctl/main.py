"""ledgerctl's composition root: the client's command line, given the SQL adapter its direct-database commands use.

The client package never imports storage (docs/adr/0005-layers.md); this module is the one place the two meet.
"""

from __future__ import annotations

from client import cli
from storage.sql.database_access import SqlDatabaseAccess


def main(argv: list[str] | None = None) -> None:
    cli.main(argv, database=SqlDatabaseAccess())


if __name__ == "__main__":
    main()
