"""API key records in the `api_keys` table: mutable admin data beside the ledger, never ledger entries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from ledger.api_keys import ApiKey, Role
from ledger.errors import NotFound, StorageError
from storage.sql import faults
from storage.sql.schema import api_keys


class SqlKeyStore:
    """Key records on an engine of the ledger's database (the server reads, `ledgerctl keys` writes)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, key: ApiKey) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(api_keys.insert().values(**_row(key)))
        except IntegrityError as err:  # 64 random bits colliding: astronomically unlikely, never silently replaced
            raise StorageError(f"key id {key.key_id} already exists; create the key again") from err
        except OperationalError as err:
            raise faults.translated(err) from err

    def get_key(self, key_id: str) -> ApiKey | None:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).one_or_none()
        except OperationalError as err:  # on every authenticated call: a retryable fault, never driver text
            raise faults.translated(err) from err
        return None if row is None else _key(row)

    def list_keys(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id)).all()
        return [_key(row) for row in rows]

    def revoke(self, key_id: str, at: int) -> ApiKey:
        """Revoke a key from `at` on; revoking a revoked key keeps its first revocation time."""
        with self.engine.begin() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).one_or_none()
            if row is None:
                raise NotFound(f"no API key {key_id!r}")
            key = _key(row)
            if key.revoked_at is None:
                conn.execute(api_keys.update().where(api_keys.c.key_id == key_id).values(revoked_at=at))
        return key.revoked(at)


def _row(key: ApiKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "salt": key.salt,
        "secret_hash": key.secret_hash,
        "role": key.role.value,
        "org_id": key.org_id,
        "label": key.label,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }


def _key(row: Any) -> ApiKey:
    return ApiKey(
        key_id=row.key_id,
        role=Role(row.role),
        org_id=row.org_id,
        created_at=int(row.created_at),
        salt=bytes(row.salt),
        secret_hash=bytes(row.secret_hash),
        label=row.label,
        revoked_at=None if row.revoked_at is None else int(row.revoked_at),
    )
