"""API keys: the format, salted hashes, the key table (SQLite and PostgreSQL) and `ledgerctl keys`."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from client.cli import app
from ledger.api_keys import InvalidApiKey, Role, authenticate, hash_secret, issue_key, parse_token
from ledger.errors import NotFound
from storage.sql import open_store
from storage.sql.keystore import SqlKeyStore
from tests.cli_support import LedgerctlRunner


class _Keys:
    def __init__(self) -> None:
        self.records: dict[str, object] = {}

    def get_key(self, key_id: str) -> object:
        return self.records.get(key_id)


def test_a_key_is_a_random_secret_stored_only_as_a_salted_hash() -> None:
    one, two = issue_key(Role.AUDITOR, None, 1), issue_key(Role.AUDITOR, None, 1)
    key_id, secret = parse_token(one.token)
    assert one.token.startswith("ulk_") and key_id == one.record.key_id and len(secret) == 43
    assert one.token != two.token and one.record.salt != two.record.salt
    assert one.record.secret_hash == hash_secret(one.record.salt, secret)
    assert secret.encode() not in repr(one.record).encode() and secret not in repr(one)
    one.record.check(secret)
    with pytest.raises(InvalidApiKey):
        one.record.check(parse_token(two.token)[1])
    with pytest.raises(InvalidApiKey):
        one.record.revoked(5).check(secret)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "ulk_",
        "ulk_0123456789abcdef",
        "ulk_0123456789abcdef_short",
        "abc_0123456789abcdef_" + "A" * 43,
        "x" * 10_000,
    ],
)
def test_malformed_tokens_are_invalid_without_a_lookup(token: str) -> None:
    with pytest.raises(InvalidApiKey) as err:
        authenticate(_Keys(), token)  # type: ignore[arg-type]
    assert str(err.value) == "the API key is not valid"  # never an echo of what was sent


def test_an_org_admin_key_needs_an_org() -> None:
    with pytest.raises(ValueError, match="org"):
        issue_key(Role.ORG_ADMIN, None, 0)
    assert issue_key(Role.ORG_ADMIN, "acme", 0).record.org_id == "acme"


def test_the_key_table_keeps_records_revokes_once_and_never_sees_the_secret(db_url: str) -> None:
    store = open_store(db_url)
    try:
        keys = SqlKeyStore(store.writer)
        issued = issue_key(Role.CONTROL_PLANE, "acme", 10, label="control plane eu-1")
        keys.add(issued.record)
        assert keys.get_key(issued.record.key_id) == issued.record
        assert authenticate(keys, issued.token) == issued.record
        assert keys.revoke(issued.record.key_id, 20).revoked_at == 20
        assert keys.revoke(issued.record.key_id, 30).revoked_at == 20  # the first revocation stands
        assert [k.revoked_at for k in keys.list_keys()] == [20]
        with pytest.raises(InvalidApiKey):
            authenticate(keys, issued.token)
        with pytest.raises(NotFound):
            keys.revoke("0" * 16, 40)
        with store.writer.connect() as conn:
            dump = repr(conn.exec_driver_sql("SELECT * FROM api_keys").all())
        assert parse_token(issued.token)[1] not in dump
    finally:
        store.close()


@pytest.mark.postgres
def test_the_application_role_may_read_keys_but_never_write_them(pg_url: str) -> None:
    open_store(pg_url).close()
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        row = conn.execute(
            "SELECT has_table_privilege('usage_ledger_app', 'api_keys', 'SELECT'), "
            "has_table_privilege('usage_ledger_app', 'api_keys', 'INSERT'), "
            "has_table_privilege('usage_ledger_app', 'api_keys', 'UPDATE')"
        ).fetchone()
    assert row == (True, False, False)


def test_ledgerctl_keys_create_list_revoke(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/keys.db"
    runner = LedgerctlRunner()
    created = runner.invoke(app, ["keys", "create", "--role", "org-admin", "--org", "acme", "--database-url", url])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    key_id = parse_token(token)[0]
    as_json = runner.invoke(
        app, ["keys", "create", "--role", "auditor", "--label", "ext audit", "--database-url", url, "--json"]
    )
    auditor = json.loads(as_json.stdout)
    assert auditor["role"] == "auditor" and auditor["org_id"] is None and auditor["api_key"].startswith("ulk_")

    listed = json.loads(runner.invoke(app, ["keys", "list", "--database-url", url, "--json"]).stdout)
    assert [(k["key_id"], k["role"], k["org_id"]) for k in listed] == [
        (key_id, "org-admin", "acme"),
        (auditor["key_id"], "auditor", None),
    ]
    assert token not in json.dumps(listed) and "api_key" not in listed[0]

    revoked = runner.invoke(app, ["keys", "revoke", key_id, "--database-url", url, "--json"])
    assert revoked.exit_code == 0 and json.loads(revoked.stdout)["revoke_time"]
    active = json.loads(runner.invoke(app, ["keys", "list", "--database-url", url, "--json"]).stdout)
    assert [k["key_id"] for k in active] == [auditor["key_id"]]
    everything = json.loads(runner.invoke(app, ["keys", "list", "--all", "--database-url", url, "--json"]).stdout)
    assert len(everything) == 2

    assert runner.invoke(app, ["keys", "revoke", "0" * 16, "--database-url", url]).exit_code == 1
    for bad in (["--role", "root"], ["--role", "org-admin"], ["--role", "billing", "--org", "acme\n"]):
        assert runner.invoke(app, ["keys", "create", *bad, "--database-url", url]).exit_code == 2, bad


def test_direct_database_commands_need_ledgerctls_database_access(tmp_path: Path) -> None:
    """`python -m client.cli` has no storage (docs/adr/0005-layers.md): keys, export/import and audit verify
    --database-url say how to run them (exit 2) instead of failing on a missing import; `ledgerctl` runs them."""
    url = f"sqlite:///{tmp_path}/keys.db"
    without = CliRunner().invoke(app, ["keys", "list", "--database-url", url, "--json"])
    assert without.exit_code == 2, without.output
    assert "python -m ledgerctl" in json.loads(without.stdout)["error"]
    assert not (tmp_path / "keys.db").exists()  # nothing was opened, so nothing was created
    assert LedgerctlRunner().invoke(app, ["keys", "list", "--database-url", url, "--json"]).exit_code == 0
