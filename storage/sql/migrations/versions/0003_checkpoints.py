"""Signed checkpoints of each log, append-only like the entries they sign.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

APPEND_ONLY_MESSAGE = "usage ledger checkpoints are append-only: a signed checkpoint is never changed or removed"
APP_ROLE = "usage_ledger_app"  # created by 0002


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("log_id", sa.String(140), primary_key=True),
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary, nullable=False),
        sa.Column("note", sa.String, nullable=False),
        sa.Column("signed_at", sa.BigInteger, nullable=False),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION usage_ledger_reject_checkpoint_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}' USING ERRCODE = 'insufficient_privilege';
            END $$;
            """
        )
        op.execute(
            "CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints "
            "FOR EACH ROW EXECUTE FUNCTION usage_ledger_reject_checkpoint_change()"
        )
        op.execute(
            "CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints "
            "FOR EACH STATEMENT EXECUTE FUNCTION usage_ledger_reject_checkpoint_change()"
        )
        # The application role appends and reads checkpoints, and can never change one.
        op.execute(f"GRANT SELECT, INSERT ON checkpoints TO {APP_ROLE}")
    elif dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER checkpoints_no_{action.lower()} BEFORE {action} ON checkpoints "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )


def downgrade() -> None:
    raise NotImplementedError("signed checkpoints are never dropped by a migration")
