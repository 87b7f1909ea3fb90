"""ix_rollup_request_spans_start in the order a dispute lookup lists requests: start time, then entry.

A lookup lists each workload's first requests in its window by (started_at, started_seq) with a LIMIT
(storage.sql.rollup_serving.window_request_spans). The index had finished_at between the two, so the database read
every request of the range and sorted them to keep 20: 213 index rows and a sort per workload of a busy window,
0.85 of the statement's 1.6 ms on PostgreSQL (bench/, 1M-entry log). In this order the LIMIT stops after 20 rows.
The index still covers every column the lookup reads; the rollups themselves are unchanged.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_HASHES = ["request_id", "started_hash", "finished_hash"]
_BY_START = ["log_id", "workload_id", "started_at", "started_seq", "finished_at", "finished_seq", *_HASHES]
_BEFORE = ["log_id", "workload_id", "started_at", "finished_at", "started_seq", "finished_seq", *_HASHES]


def _recreate(columns: list[str]) -> None:
    op.drop_index("ix_rollup_request_spans_start", table_name="rollup_request_spans")
    op.create_index("ix_rollup_request_spans_start", "rollup_request_spans", columns)


def upgrade() -> None:
    _recreate(_BY_START)


def downgrade() -> None:
    _recreate(_BEFORE)
