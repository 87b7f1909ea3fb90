"""Alembic migrations for the ledger schema, run by `storage.sql.migrate.upgrade`."""
