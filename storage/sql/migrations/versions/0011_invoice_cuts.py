"""`invoice_cuts`: each log's latest issued invoice cut, so R12's guard reads one index row.

R12 forbids a price version that takes effect before the cut instant of any issued invoice of any org. Finding the
latest cut by reading every org's INVOICE entries costs a read per org on every price-book update; this table
holds each log's latest cut, kept by the transaction that appends the invoice (storage/sql/store.py), and
ix_invoice_cuts_cut gives the maximum from the index. Derived: it is filled here from the INVOICE entries already
in the ledger (the cut is the invoice's period end, R17).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from ledger.timeutil import parse_rfc3339_micros

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "invoice_cuts",
        sa.Column("log_id", sa.String(140), primary_key=True),
        sa.Column("cut", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_invoice_cuts_cut", "invoice_cuts", ["cut"])
    latest: dict[str, tuple[int, int]] = {}
    rows = op.get_bind().execute(sa.text("SELECT log_id, seq, body FROM entries WHERE kind = 'INVOICE'"))
    for log_id, seq, body in rows:
        cut = parse_rfc3339_micros(json.loads(bytes(body))["period"]["end"])
        if log_id not in latest or cut > latest[log_id][0]:
            latest[log_id] = (cut, int(seq))
    if latest:
        op.bulk_insert(table, [{"log_id": log, "cut": cut, "seq": seq} for log, (cut, seq) in latest.items()])
    if op.get_bind().dialect.name == "postgresql":
        # UPDATE also lets a price-book append lock the table in SHARE mode (the guard's serialization).
        op.execute(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'usage_ledger_app') THEN "
            "GRANT SELECT, INSERT, UPDATE ON invoice_cuts TO usage_ledger_app; "
            "END IF; END $$"
        )


def downgrade() -> None:
    op.drop_index("ix_invoice_cuts_cut", table_name="invoice_cuts")
    op.drop_table("invoice_cuts")
