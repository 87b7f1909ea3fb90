"""Signed from the first start (issue #21): the SQLite default makes its key, PostgreSQL needs one; files are 0600."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from client.ledger_client import LedgerClient
from ledger.log.note import NoteSigner, NoteVerifier, generate_signer_key, read_private_key_file
from ledger.log.note import write_private_key_file as write_key
from server.main import _log_format
from server.main import main as server_main
from server.signing_setup import KEY_FILE_SUFFIX
from storage.sql import SqlStore
from tests.conftest import EventFactory
from tests.server_support import ledger_server


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def ledgerctl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ledgerctl", *args], capture_output=True, text=True, cwd=cwd)


def test_first_start_creates_a_0600_key_beside_the_database_and_prints_its_verifier_key(tmp_path: Path) -> None:
    database = tmp_path / "usage-ledger.db"
    key_file = tmp_path / ("usage-ledger.db" + KEY_FILE_SUFFIX)
    with ledger_server(f"sqlite:///{database}", "--log-level", "DEBUG", cwd=tmp_path) as server:
        assert key_file.is_file() and mode(key_file) == 0o600
        private_key, _ = read_private_key_file(key_file)
        assert server.verifier_key == NoteSigner(private_key).verifier_key
        assert any(f"created the checkpoint signing key {key_file}" in line for line in server.lines)
        # The public verifier key is also written beside it, for a local auditor to pin by file.
        assert (tmp_path / "usage-ledger.db.verifier-key").read_text() == f"{server.verifier_key}\n"
        # The running server answers with the same key, and signs with it.
        fetched = ledgerctl("audit", "verifier-key", "--target", server.target)
        assert fetched.returncode == 0, fetched.stderr
        assert fetched.stdout.strip() == server.verifier_key
        signed = ledgerctl("audit", "checkpoint", "--log", "system", "--sign", "--target", server.target)
        assert signed.returncode == 0, signed.stderr
        NoteVerifier(server.verifier_key).verify(signed.stdout)
        logs = server.stderr()
    # Never logged, not even at DEBUG: neither the key file's content nor its secret part.
    secret = private_key.rsplit("+", 1)[1]
    assert secret not in logs and secret not in "\n".join(server.lines)


def test_later_starts_reuse_the_key_and_never_overwrite_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    key_file = tmp_path / ("l.db" + KEY_FILE_SUFFIX)
    with ledger_server(url) as first:
        pass
    content = key_file.read_bytes()
    with ledger_server(url) as second:
        assert not any("created the checkpoint signing key" in line for line in second.lines)
    assert second.verifier_key == first.verifier_key
    assert key_file.read_bytes() == content
    # A later start writes the verifier key file only when it is missing; it never rewrites a pinned one.
    verifier_file = tmp_path / "l.db.verifier-key"
    verifier_file.write_text("edited by hand\n")
    with ledger_server(url):
        pass
    assert verifier_file.read_text() == "edited by hand\n"


def test_a_database_with_signed_checkpoints_and_no_key_file_refuses_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_root_logging: None
) -> None:
    """A fresh key would make every verifier key an auditor pinned fail; the operator must restore the old one."""
    url = f"sqlite:///{tmp_path / 'l.db'}"
    with ledger_server(url) as server:
        signed = ledgerctl("audit", "checkpoint", "--log", "system", "--sign", "--target", server.target)
        assert signed.returncode == 0, signed.stderr
    key_file = tmp_path / ("l.db" + KEY_FILE_SUFFIX)
    key_file.rename(tmp_path / "moved-away.key")
    code = server_main(["--database-url", url, "--listen", "127.0.0.1:0"])
    assert code == 2
    assert "holds checkpoints signed with a key that is not at" in capsys.readouterr().err
    assert not key_file.exists()


def test_a_configured_key_is_used_and_no_key_is_made(tmp_path: Path) -> None:
    own = tmp_path / "ops.key"
    write_key(own, generate_signer_key("ledger.example"))
    with ledger_server(f"sqlite:///{tmp_path / 'l.db'}", "--signing-key", str(own)) as server:
        assert server.verifier_key is not None and server.verifier_key.startswith("ledger.example+")
    assert not (tmp_path / ("l.db" + KEY_FILE_SUFFIX)).exists()


def test_no_signing_makes_no_key_and_says_so(tmp_path: Path) -> None:
    with ledger_server(f"sqlite:///{tmp_path / 'l.db'}", "--no-signing") as server:
        assert server.verifier_key is None
        assert any("checkpoints are not signed (--no-signing)" in line for line in server.lines)
        fetched = ledgerctl("audit", "verifier-key", "--target", server.target, "--json")
        assert fetched.returncode == 1
        assert json.loads(fetched.stdout)["code"] == "FAILED_PRECONDITION"
    assert not (tmp_path / ("l.db" + KEY_FILE_SUFFIX)).exists()


@pytest.mark.postgres
def test_postgresql_refuses_to_start_without_a_key_unless_told_no_signing(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_root_logging: None
) -> None:
    code = server_main(["--database-url", pg_url, "--listen", "127.0.0.1:0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "with PostgreSQL the server makes no signing key itself" in err and "--no-signing" in err
    with ledger_server(pg_url, "--no-signing", cwd=tmp_path) as server:
        assert server.port and server.verifier_key is None
    assert list(tmp_path.iterdir()) == []  # no key file made anywhere near


def test_signing_key_and_no_signing_together_are_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_root_logging: None
) -> None:
    own = tmp_path / "ops.key"
    write_key(own, generate_signer_key("ledger.example"))
    code = server_main(["--database-url", f"sqlite:///{tmp_path / 'l.db'}", "--signing-key", str(own), "--no-signing"])
    assert code == 2 and "not both" in capsys.readouterr().err


def test_sqlite_database_wal_and_shm_files_are_created_0600(tmp_path: Path, make_event: EventFactory) -> None:
    database = tmp_path / "ledger.db"
    old_umask = os.umask(0o022)  # the usual umask, which would give SQLite's own files 0644
    try:
        store = SqlStore(f"sqlite:///{database}")
    finally:
        os.umask(old_umask)
    try:
        from ledger.intake import Ledger

        Ledger(store).append_events([make_event()])
        files = [database, tmp_path / "ledger.db-wal", tmp_path / "ledger.db-shm"]
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        store.close()


def test_an_existing_database_keeps_the_mode_its_operator_chose(tmp_path: Path) -> None:
    database = tmp_path / "ledger.db"
    database.touch(mode=0o640)
    os.chmod(database, 0o640)
    SqlStore(f"sqlite:///{database}").close()
    assert mode(database) == 0o640


def test_server_logs_are_text_at_a_terminal_and_json_lines_otherwise(tmp_path: Path) -> None:
    primary, secondary = os.openpty()
    with os.fdopen(secondary, "w") as terminal, (tmp_path / "log").open("w") as file:
        assert _log_format("auto", terminal) == "text"
        assert _log_format("auto", file) == "json"
        assert _log_format("json", terminal) == "json"
    os.close(primary)
    with ledger_server(f"sqlite:///{tmp_path / 'l.db'}", "--no-signing") as server, LedgerClient(server.target) as c:
        list(c.logs())
        logged = server.stderr().splitlines()
    assert logged and all(json.loads(line)["message"] for line in logged)
