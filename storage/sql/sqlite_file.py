"""Where a SQLite ledger lives on disk, and creating its file readable by its owner only (issue #23 item 5)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

OWNER_ONLY = 0o600


def sqlite_database_path(url: str) -> Path | None:
    """The file a sqlite:/// URL names; None for another database, an in-memory one or a URL that is not one."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or parsed.query.get("mode") == "memory" or database.startswith("file:"):
        return None
    return Path(database)


def create_owner_only(path: Path) -> bool:
    """Create `path` empty with mode 0600 unless it exists; True when this call created it.

    SQLite reads an empty file as an empty database, and creates its -wal and -shm files with the database file's
    permissions, so the ledger's usage, invoices and API key hashes are never readable by other local users. An
    existing file keeps its mode: the ledger never changes permissions an operator chose.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY)
    except FileExistsError:
        return False
    except OSError:
        return False  # a missing directory or no permission: SQLite's own open fails next, with the URL in its error
    os.close(descriptor)
    return True
