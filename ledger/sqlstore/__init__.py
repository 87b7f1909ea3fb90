"""SQL storage for the ledger through SQLAlchemy: a SQLite file by default, PostgreSQL in production."""

from ledger.sqlstore.store import SqlStore, open_store

__all__ = ["SqlStore", "open_store"]
