"""Derived usage rollups: per-workload rated sessions and per-sample storage charges, with a cursor per log.

Rollups are rebuildable from the log and never the source of truth, so they are not append-only.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollup_cursors",
        sa.Column("log_id", sa.String(140), primary_key=True),
        sa.Column("applied_size", sa.BigInteger, nullable=False),
        sa.Column("system_size", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "rollup_workloads",
        sa.Column("log_id", sa.String(140), primary_key=True),
        sa.Column("workload_id", sa.String(128), primary_key=True),
        sa.Column("endpoint_id", sa.String(128), nullable=False),
        sa.Column("workload_kind", sa.String(16), nullable=False),
        sa.Column("instance_type", sa.String(64), nullable=False),
        sa.Column("worker_type", sa.String(16), nullable=False),
        sa.Column("lifecycle", sa.LargeBinary, nullable=False),
        sa.Column("up", sa.BigInteger),
        sa.Column("billed_end", sa.BigInteger),
        sa.Column("is_open", sa.Boolean, nullable=False),
        sa.Column("session", sa.LargeBinary),
    )
    op.create_index("ix_rollup_workloads_up", "rollup_workloads", ["log_id", "up"])
    op.create_table(
        "rollup_storage",
        sa.Column("log_id", sa.String(140), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("endpoint_id", sa.String(128), nullable=False),
        sa.Column("workload_id", sa.String(128), nullable=False),
        sa.Column("storage_kind", sa.String(16), nullable=False),
        sa.Column("start", sa.BigInteger, nullable=False),
        sa.Column("charge", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_rollup_storage_start", "rollup_storage", ["log_id", "start"])
    if op.get_bind().dialect.name == "postgresql":
        # The application role (0002) maintains rollups: they are derived, so it may also update and delete them.
        op.execute(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'usage_ledger_app') THEN "
            "GRANT SELECT, INSERT, UPDATE, DELETE ON rollup_cursors, rollup_workloads, rollup_storage "
            "TO usage_ledger_app; END IF; END $$"
        )


def downgrade() -> None:
    op.drop_table("rollup_storage")
    op.drop_table("rollup_workloads")
    op.drop_table("rollup_cursors")
