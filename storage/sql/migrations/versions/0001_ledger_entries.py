"""Ledger entries and log heads, with triggers that make entries append-only.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY_MESSAGE = "usage ledger entries are append-only: corrections are new entries (R23)"


def upgrade() -> None:
    op.create_table(
        "entries",
        sa.Column("log_id", sa.String(140), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("recorded_at", sa.BigInteger, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("prev_hash", sa.LargeBinary, nullable=False),
        sa.Column("entry_hash", sa.LargeBinary, nullable=False),
        sa.Column("subtree_hashes", sa.LargeBinary, nullable=False),
        sa.Column("event_id", sa.String(128)),
        sa.Column("org_id", sa.String(128)),
        sa.Column("endpoint_id", sa.String(128)),
        sa.Column("workload_id", sa.String(128)),
        sa.Column("request_id", sa.String(128)),
        sa.Column("occurred_at", sa.BigInteger),
    )
    op.create_index("ux_entries_event_id", "entries", ["log_id", "event_id"], unique=True)
    op.create_index("ix_entries_endpoint_time", "entries", ["org_id", "endpoint_id", "occurred_at"])
    op.create_index("ix_entries_request", "entries", ["request_id"])
    op.create_index("ix_entries_workload", "entries", ["log_id", "workload_id"])
    # Account, credit, invoice and other non-event entries are few: a partial index finds them without a scan.
    op.create_index(
        "ix_entries_kind",
        "entries",
        ["log_id", "kind", "seq"],
        sqlite_where=sa.text("kind <> 'EVENT'"),
        postgresql_where=sa.text("kind <> 'EVENT'"),
    )
    op.create_table(
        "log_heads",
        sa.Column("log_id", sa.String(140), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("head_hash", sa.LargeBinary, nullable=False),
        sa.Column("frontier", sa.LargeBinary, nullable=False),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION usage_ledger_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}' USING ERRCODE = 'insufficient_privilege';
            END $$;
            """
        )
        op.execute(
            "CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries "
            "FOR EACH ROW EXECUTE FUNCTION usage_ledger_reject_change()"
        )
        op.execute(
            "CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries "
            "FOR EACH STATEMENT EXECUTE FUNCTION usage_ledger_reject_change()"
        )
    elif dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER entries_no_{action.lower()} BEFORE {action} ON entries "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )


def downgrade() -> None:
    raise NotImplementedError("the ledger is never dropped by a migration")
