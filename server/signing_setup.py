"""Which key signs a server's checkpoints: the one configured, or on the SQLite default one made on first start.

A ledger whose checkpoints nobody signs gives an auditor nothing to pin (issue #21), so the embedded default signs
from its first start: with no key configured, a key is created beside the database file (mode 0600, never
overwritten) and reused on every later start. PostgreSQL is production, where keys are made and kept on purpose
(`ledgerctl audit keygen`): there the server refuses to start without one unless told `--no-signing`.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from ledger.checkpoint import NoteSigner, generate_signer_key, read_private_key_file, write_private_key_file
from ledger.errors import LedgerError
from ledger.sqlstore.sqlite_file import sqlite_database_path

# Beside `usage-ledger.db`: `usage-ledger.db.signing.key` (`*.key` files are ignored by git).
KEY_FILE_SUFFIX = ".signing.key"


class SigningKeyRequired(LedgerError):
    """The server was given no signing key where it will not make one itself; a configuration error."""

    reason = "SIGNING_KEY_REQUIRED"


@dataclass(frozen=True)
class SigningSetup:
    """The key file the server signs with (None: it signs nothing), its verifier key, and whether it is new."""

    key_path: Path | None
    verifier_key: str | None = None
    created: bool = False
    warning: str | None = None


def key_file_beside(database: Path) -> Path:
    return database.with_name(database.name + KEY_FILE_SUFFIX)


def signing_setup(database_url: str, signing_key: str | None, *, no_signing: bool, ledger_name: str) -> SigningSetup:
    """Decide the signing key; raises SigningKeyRequired, VerificationError (a bad key file) or OSError."""
    if signing_key is not None and no_signing:
        raise SigningKeyRequired("give --signing-key FILE or --no-signing, not both")
    if no_signing:
        return SigningSetup(None)
    if signing_key is not None:
        return _existing(Path(signing_key))
    database = sqlite_database_path(database_url)
    if database is None:
        kind = "an in-memory database" if database_url.startswith("sqlite") else "PostgreSQL"
        raise SigningKeyRequired(
            f"with {kind} the server makes no signing key itself: give --signing-key FILE (create one with "
            "`ledgerctl audit keygen --name NAME --out FILE`) or, to serve unsigned checkpoints, --no-signing"
        )
    key_path = key_file_beside(database)
    if key_path.exists():
        return _existing(key_path)
    _refuse_if_signed_before(database, key_path)
    try:
        write_private_key_file(key_path, generate_signer_key(ledger_name))
    except FileExistsError:
        return _existing(key_path)  # another process's first start won the race; use its key
    return _existing(key_path, created=True)


def _existing(key_path: Path, *, created: bool = False) -> SigningSetup:
    key, warning = read_private_key_file(key_path)
    return SigningSetup(key_path, NoteSigner(key).verifier_key, created, warning)


def _refuse_if_signed_before(database: Path, key_path: Path) -> None:
    """A database holding signed checkpoints had a key; a new one would silently change what auditors pin."""
    if not database.is_file() or database.stat().st_size == 0:
        return
    try:
        with closing(sqlite3.connect(database.resolve().as_uri() + "?mode=ro", uri=True)) as conn:
            signed = conn.execute("SELECT 1 FROM checkpoints LIMIT 1").fetchone() is not None
    except sqlite3.Error:
        return  # no checkpoints table yet: a database no server has signed in
    if signed:
        raise SigningKeyRequired(
            f"{database} holds checkpoints signed with a key that is not at {key_path}: restore that key file "
            "(or give --signing-key FILE); a new key would make every pinned verifier key fail"
        )
