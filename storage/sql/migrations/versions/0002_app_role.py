"""PostgreSQL role `usage_ledger_app`: may append to and read the ledger, never change or remove an entry.

Revision ID: 0002
Revises: 0001

The triggers of 0001 refuse UPDATE, DELETE and TRUNCATE on `entries`, but the table's owner (or a superuser) can
disable a trigger. A server that logs in as a member of this role holds no such power: the database refuses the
change on privileges alone, before any trigger runs. docs/scaling.md shows how to run the server that way.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APP_ROLE = "usage_ledger_app"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        # SQLite has no roles: file permissions and the 0001 triggers are all it offers.
        return
    # Roles belong to the cluster, not the database, so another ledger database may have created it already,
    # possibly at this very moment: both the existence check and the race end in "already there, carry on".
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} NOLOGIN;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END $$;
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    # Append and read only: no UPDATE, DELETE, TRUNCATE, REFERENCES or TRIGGER on the ledger proper.
    op.execute(f"GRANT SELECT, INSERT ON entries TO {APP_ROLE}")
    # The derived head rows are inserted for a new log and updated (under SELECT ... FOR UPDATE) on every append.
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON log_heads TO {APP_ROLE}")
    # The server checks the schema revision on start; reading it is all it needs (migrations run as the owner).
    op.execute(f"GRANT SELECT ON alembic_version TO {APP_ROLE}")


def downgrade() -> None:
    raise NotImplementedError("the ledger is never dropped by a migration")
