"""SQL storage for the ledger through SQLAlchemy: a SQLite file by default, PostgreSQL in production."""

from storage.sql.store import SqlStore, open_store

__all__ = ["SqlStore", "open_store"]
