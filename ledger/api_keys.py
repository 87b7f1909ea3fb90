"""API keys: roles, the key format, generation and salted hashes; the ledger stores only the hash (no I/O here)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from ledger.errors import LedgerError

# A key reads `ulk_<key id>_<secret>`: the prefix lets secret scanners and people recognise a leaked key, the key id
# names the stored record (it is no secret and appears in listings and logs), the secret is 256 random bits.
KEY_PREFIX = "ulk"
KEY_ID_BYTES = 8
SECRET_BYTES = 32
SALT_BYTES = 16
KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{43}")
# Longer than any key this module issues; bounds the work done on whatever a caller sends.
MAX_TOKEN_LENGTH = 128
_HASH_CONTEXT = b"usageledger api key v1\x00"


class Role(StrEnum):
    """Who a caller is to the ledger; server/auth.py says what each role may call (docs/security.md)."""

    CONTROL_PLANE = "control-plane"
    BILLING = "billing"
    SUPPORT = "support"
    AUDITOR = "auditor"
    ORG_ADMIN = "org-admin"


# Roles that only make sense for one org: an org admin administers its own org, nothing else.
ORG_BOUND_ROLES = frozenset({Role.ORG_ADMIN})


class InvalidApiKey(LedgerError):
    """A presented key is malformed, unknown, revoked or has the wrong secret. Deliberately one error for all four,
    so a caller cannot tell a revoked key from one that never existed."""

    reason = "INVALID_API_KEY"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key record: everything but the secret, of which only a salted hash is kept.

    Key records are mutable admin data (revocation sets `revoked_at`), not ledger entries. Times are microseconds.
    """

    key_id: str
    role: Role
    org_id: str | None
    created_at: int
    salt: bytes
    secret_hash: bytes
    label: str | None = None
    revoked_at: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def check(self, secret: str) -> None:
        """Raise InvalidApiKey unless `secret` is this key's secret and the key is not revoked."""
        # Compare in constant time, and compute the hash even for a revoked key so timing tells nothing.
        matches = hmac.compare_digest(hash_secret(self.salt, secret), self.secret_hash)
        if not matches or not self.active:
            raise InvalidApiKey("the API key is not valid")

    def revoked(self, at: int) -> ApiKey:
        return self if self.revoked_at is not None else replace(self, revoked_at=at)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A newly generated key: `token` is what the holder sends and is shown exactly once; `record` is stored."""

    token: str
    record: ApiKey

    def __repr__(self) -> str:  # never print the secret by accident
        return f"IssuedKey(key_id={self.record.key_id!r}, role={self.record.role.value!r})"


class KeySource(Protocol):
    """Where the server looks key records up (storage/sql/keystore.py in production)."""

    def get_key(self, key_id: str) -> ApiKey | None: ...


def hash_secret(salt: bytes, secret: str) -> bytes:
    """SHA-256 over a fixed context, the salt and the secret.

    A slow password hash (scrypt, argon2) defends guessable passwords; these secrets are 256 random bits, which no
    amount of hashing speed makes guessable, and a fast hash keeps per-call authentication cheap.
    """
    return hashlib.sha256(_HASH_CONTEXT + salt + secret.encode()).digest()


def issue_key(role: Role, org_id: str | None, now: int, label: str | None = None) -> IssuedKey:
    """Generate a key for `role` (bound to `org_id` when given); raise ValueError for an org-bound role without one."""
    if role in ORG_BOUND_ROLES and not org_id:
        raise ValueError(f"a {role.value} key needs an org")
    key_id = secrets.token_hex(KEY_ID_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    salt = secrets.token_bytes(SALT_BYTES)
    record = ApiKey(
        key_id=key_id,
        role=role,
        org_id=org_id or None,
        created_at=now,
        salt=salt,
        secret_hash=hash_secret(salt, secret),
        label=label or None,
    )
    return IssuedKey(f"{KEY_PREFIX}_{key_id}_{secret}", record)


def parse_token(token: str) -> tuple[str, str]:
    """Split a presented key into (key id, secret); raise InvalidApiKey if it is not in the format keys are issued in.

    The error never repeats the token: it may be a real key sent to the wrong place.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidApiKey("the API key is not valid")
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not KEY_ID_RE.fullmatch(key_id) or not _SECRET_RE.fullmatch(secret):
        raise InvalidApiKey("the API key is not valid")
    return key_id, secret


def authenticate(source: KeySource, token: str) -> ApiKey:
    """The active key record a presented token belongs to; InvalidApiKey otherwise."""
    key_id, secret = parse_token(token)
    record = source.get_key(key_id)
    if record is None:
        # Hash anyway, so an unknown key id costs what a wrong secret costs.
        hash_secret(bytes(SALT_BYTES), secret)
        raise InvalidApiKey("the API key is not valid")
    record.check(secret)
    return record
