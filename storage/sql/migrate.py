"""Bring a database's schema to the newest Alembic revision (run by the server and the CLI on open)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "storage.sql:migrations")
    return config


def upgrade(engine: Engine) -> None:
    """Migrate in one transaction. Servers started together on an empty PostgreSQL database take turns on an
    advisory lock (released at commit), so the first migrates and the others find the schema current; PostgreSQL's
    DDL is transactional, so a failed migration leaves nothing behind. SQLite's writer begins IMMEDIATE: the
    database lock serializes them the same way."""
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('usage-ledger schema migrations'))")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
