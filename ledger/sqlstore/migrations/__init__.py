"""Alembic migrations for the ledger schema, run by `ledger.sqlstore.migrate.upgrade`."""
