"""PostgreSQL: `ledger_append_on_kept_heads`, a group's whole append as one statement (issue #26).

A server keeps the log heads it committed last (storage/sql/kept_heads.py). A group of plain appends (events,
credits) to kept heads was sent as one pipeline of five or more statements (BEGIN, the heads' lock, multi-row
INSERTs of three rows each, the guarded head update, COMMIT). This function does the same work as one statement:
it locks the heads in log order (as the general append does, so the two never deadlock), inserts the rows from one
array per column, and moves each head only from the size and hash the server kept; if a head is elsewhere, it
raises serialization_failure (SQLSTATE 40001) and, the statement being its own transaction, writes nothing. An
event stored already, or an entry at one of the sequence numbers, fails the insert on its unique index (23505).
Either way the server appends the general way, which reads the heads and answers R24 duplicates.

Measured on a 2-core machine (docs/benchmarks.md, 2026-12-07, sixth session): in-process, a single-event append
cost the server 307-344 us of CPU against 394-421 as the pipeline; 16 clients' single appends, three interleaved
pairs, 0.52, 0.52, 0.50 of `Check` against 0.50, 0.49, 0.50, the server's CPU 775-809 us per append against 806-872.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

APP_ROLE = "usage_ledger_app"
# The entries' columns in the order the server sends them (ledger.log.append.ROW_FIELDS), with their types.
_ENTRY_COLUMNS = (
    ("log_id", "varchar"), ("seq", "int8"), ("kind", "varchar"), ("recorded_at", "int8"), ("body", "bytea"),
    ("prev_hash", "bytea"), ("entry_hash", "bytea"), ("subtree_hashes", "bytea"), ("org_id", "varchar"),
    ("endpoint_id", "varchar"), ("workload_id", "varchar"), ("request_id", "varchar"), ("occurred_at", "int8"),
    ("event_id", "varchar"),
)  # fmt: skip
_HEAD_COLUMNS = (
    ("log_id", "varchar"), ("size", "int8"), ("head_hash", "bytea"), ("frontier", "bytea"), ("kept_size", "int8"),
    ("kept_hash", "bytea"),
)  # fmt: skip
_ARGUMENTS = ", ".join(
    [f"e_{name} {kind}[]" for name, kind in _ENTRY_COLUMNS] + [f"h_{name} {kind}[]" for name, kind in _HEAD_COLUMNS]
)
_SIGNATURE = (
    "ledger_append_on_kept_heads("
    + ", ".join([f"{kind}[]" for _, kind in _ENTRY_COLUMNS] + [f"{kind}[]" for _, kind in _HEAD_COLUMNS])
    + ")"
)

FUNCTION = f"""
CREATE OR REPLACE FUNCTION ledger_append_on_kept_heads({_ARGUMENTS}) RETURNS void LANGUAGE plpgsql AS $body$
DECLARE
    moved integer;
BEGIN
    PERFORM 1 FROM log_heads WHERE log_id = ANY (h_log_id) ORDER BY log_id FOR UPDATE;
    INSERT INTO entries ({", ".join(name for name, _ in _ENTRY_COLUMNS)})
    SELECT * FROM unnest({", ".join(f"e_{name}" for name, _ in _ENTRY_COLUMNS)});
    UPDATE log_heads AS head SET size = new.size, head_hash = new.head_hash, frontier = new.frontier
    FROM unnest({", ".join(f"h_{name}" for name, _ in _HEAD_COLUMNS)})
        AS new({", ".join(name for name, _ in _HEAD_COLUMNS)})
    WHERE head.log_id = new.log_id AND head.size = new.kept_size AND head.head_hash = new.kept_hash;
    GET DIAGNOSTICS moved = ROW_COUNT;
    IF moved <> cardinality(h_log_id) THEN
        RAISE EXCEPTION 'a log head moved since this server committed it' USING ERRCODE = 'serialization_failure';
    END IF;
END
$body$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite appends on its own connection's one write lock (storage/sql/store.py)
    op.execute(FUNCTION)
    op.execute(f"GRANT EXECUTE ON FUNCTION {_SIGNATURE} TO {APP_ROLE}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {_SIGNATURE}")
