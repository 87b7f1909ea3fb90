"""Evidence of running (R28) kept with the rollups: each workload's latest event, the org's latest event and HEARTBEAT.

An open session accrues only up to its evidence (R10, R28): the latest event of the workload (any type: a request or
a storage sample shows it running as well as its lifecycle does) or the org's latest HEARTBEAT. The rollups keep
lifecycle events only, so each workload's latest event time goes in `rollup_evidence`; the cursor keeps the org's
latest event time and latest HEARTBEAT, read in one snapshot with the rows, for the settled-through time (R28).
`storage_at` is a workload's latest storage sample: while it runs, its next interval starts there, so the
settled-through time is held back to it (ledger/rating/evidence.py).

Rollups are derived, so the existing ones are cleared here and rebuilt from the logs on their next read.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("rollup_cursors", "rollup_workloads", "rollup_storage", "rollup_requests", "rollup_serving"):
        op.execute(f"DELETE FROM {table}")
    op.execute("DELETE FROM rollup_request_spans")
    with op.batch_alter_table("rollup_cursors") as batch:
        batch.add_column(sa.Column("latest_event_at", sa.BigInteger))
        batch.add_column(sa.Column("heartbeat_at", sa.BigInteger))
    op.create_table(
        "rollup_evidence",
        sa.Column("log_id", sa.String(140), primary_key=True),
        sa.Column("workload_id", sa.String(128), primary_key=True),
        sa.Column("evidence_at", sa.BigInteger, nullable=False),
        sa.Column("storage_at", sa.BigInteger),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'usage_ledger_app') THEN "
            "GRANT SELECT, INSERT, UPDATE, DELETE ON rollup_evidence TO usage_ledger_app; "
            "END IF; END $$"
        )


def downgrade() -> None:
    op.drop_table("rollup_evidence")
    with op.batch_alter_table("rollup_cursors") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("latest_event_at")
