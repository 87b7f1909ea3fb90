"""Which key signs a server's checkpoints: the one configured, or on the SQLite default one made on first start.

A ledger whose checkpoints nobody signs gives an auditor nothing to pin (issue #21), so the embedded default signs
from its first start: with no key configured, a key is created beside the database file (mode 0600, never
overwritten) and reused on every later start. PostgreSQL is production, where keys are made and kept on purpose
(`ledgerctl audit keygen`): there the server refuses to start without one unless told `--no-signing`.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path

from ledger.errors import LedgerError
from ledger.log.note import NoteSigner, generate_signer_key, read_private_key_file, write_private_key_file
from storage.sql.sqlite_file import sqlite_database_path

# Beside `usage-ledger.db`: `usage-ledger.db.signing.key` (`*.key` files are ignored by git), and the public
# verifier key the server printed in `usage-ledger.db.verifier-key`, for a local auditor to pin by file.
KEY_FILE_SUFFIX = ".signing.key"
VERIFIER_FILE_SUFFIX = ".verifier-key"


class SigningKeyRequired(LedgerError):
    """The server was given no signing key where it will not make one itself; a configuration error."""

    reason = "SIGNING_KEY_REQUIRED"


@dataclass(frozen=True)
class SigningSetup:
    """The key file the server signs with (None: it signs nothing), its verifier key, and whether it is new."""

    key_path: Path | None
    verifier_key: str | None = None
    created: bool = False
    # Where the verifier key is also written (the SQLite default only).
    verifier_file: Path | None = None


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
    created = False
    if not key_path.exists():
        _refuse_if_signed_before(database, key_path)
        try:
            write_private_key_file(key_path, generate_signer_key(ledger_name))
            created = True
        except FileExistsError:
            pass  # another process's first start won the race; use its key
    setup = _existing(key_path, created=created)
    assert setup.verifier_key is not None
    verifier_file = database.with_name(database.name + VERIFIER_FILE_SUFFIX)
    _write_verifier_file(verifier_file, setup.verifier_key)
    return replace(setup, verifier_file=verifier_file)


def _existing(key_path: Path, *, created: bool = False) -> SigningSetup:
    key, _ = read_private_key_file(key_path)  # a loose file mode is warned about once, when the server loads the key
    return SigningSetup(key_path, NoteSigner(key).verifier_key, created)


def _write_verifier_file(path: Path, verifier_key: str) -> None:
    """The verifier key, public, written once: a later start never rewrites what an auditor may have pinned."""
    try:
        with path.open("x", encoding="utf-8") as f:
            f.write(verifier_key + "\n")
    except FileExistsError:
        pass


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
