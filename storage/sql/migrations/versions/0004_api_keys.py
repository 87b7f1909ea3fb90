"""API keys: salted hashes of key secrets with their role and org; mutable admin data, not ledger entries.

Revision ID: 0004
Revises: 0003

Unlike `entries` and `checkpoints`, this table has no append-only triggers: revoking a key updates its row.
The server only reads it; keys are created and revoked by `ledgerctl keys` on the database directly.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

APP_ROLE = "usage_ledger_app"  # created by 0002


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("salt", sa.LargeBinary, nullable=False),
        sa.Column("secret_hash", sa.LargeBinary, nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("org_id", sa.String(128)),
        sa.Column("label", sa.String(200)),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger),
    )
    if op.get_bind().dialect.name == "postgresql":
        # A server logged in as the application role authenticates callers; it can neither mint nor un-revoke keys.
        op.execute(f"GRANT SELECT ON api_keys TO {APP_ROLE}")


def downgrade() -> None:
    raise NotImplementedError("the ledger is never dropped by a migration")
