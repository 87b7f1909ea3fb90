"""`ledgerctl audit` against a real signing server: keygen, verify (every kind of tampering), prove and check-proof."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import Result

from client.cli import app
from client.ledger_client import LedgerClient
from ledger.log.entry import chain_hash, entry_bytes
from ledger.log.merkle import leaf_hash
from ledger.log.note import Checkpoint, NoteSigner, generate_signer_key, sign_checkpoint
from server.app import RunningServer
from tests.cli_support import LedgerctlRunner

if TYPE_CHECKING:
    from tests.audit_support import AddEvents, TamperFactory

pytest_plugins = ["tests.audit_support"]
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

RUNNER = LedgerctlRunner(
    env={"LEDGER_DATABASE_URL": None, "LEDGER_VERIFIER_KEY": None, "LEDGER_NAME": None, "LEDGER_TARGET": None}
)


def ledgerctl(*args: str | Path) -> Result:
    return RUNNER.invoke(app, [str(a) for a in args])


def verify(target: str, verifier_key: str, state_dir: Path, *extra: str | Path) -> tuple[int, Any]:
    result = ledgerctl(
        "audit",
        "verify",
        "--target",
        target,
        "--verifier-key",
        verifier_key,
        "--state-dir",
        state_dir,
        "--json",
        *extra,
    )
    return result.exit_code, json.loads(result.stdout)


def sign(target: str, log_id: str = "org/acme") -> str:
    result = ledgerctl("audit", "checkpoint", "--log", log_id, "--sign", "--target", target)
    assert result.exit_code == 0, result.output
    return result.stdout


# -- keygen -----------------------------------------------------------------------------------------------------------


def test_keygen_writes_an_owner_only_key_prints_the_verifier_key_and_never_overwrites(tmp_path: Path) -> None:
    key = tmp_path / "ledger.key"
    result = ledgerctl("audit", "keygen", "--name", "usage-ledger.local", "--out", key)
    assert result.exit_code == 0, result.output
    verifier_key = result.stdout.strip()
    assert verifier_key.startswith("usage-ledger.local+") and "PRIVATE" not in result.stdout
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert NoteSigner(key.read_text().strip()).verifier_key == verifier_key

    before = key.read_bytes()
    again = ledgerctl("audit", "keygen", "--name", "usage-ledger.local", "--out", key, "--json")
    assert again.exit_code == 2 and "refusing to overwrite" in json.loads(again.stdout)["error"]
    assert key.read_bytes() == before
    bad = ledgerctl("audit", "keygen", "--name", "has space", "--out", tmp_path / "other.key")
    assert bad.exit_code == 2 and not (tmp_path / "other.key").exists()


# -- verify -----------------------------------------------------------------------------------------------------------


@sqlite_only
def test_verify_checks_signed_checkpoints_and_remembers_the_newest(
    audit_client: LedgerClient, add_events: AddEvents, target: str, verifier_key: str, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    add_events(audit_client, 6)
    code, report = verify(target, verifier_key, state)
    assert code == 0 and report["ok"] and report["checkpoints_checked"]
    assert [log["checkpoint"] for log in report["logs"]] == [None, None]  # nothing signed yet: reported, not failed
    assert report["invoices"] == {  # no invoice yet: none to re-derive (tests/test_audit_invoices.py has some)
        "checked": True,
        "invoices": [],
        "problems": [],
        "note": "0 invoices of 1 org log re-derived from the raw entries before each: 0 match, 0 differ",
    }

    sign(target)
    code, report = verify(target, verifier_key, state, "--org", "acme")
    assert code == 0, report
    [log] = report["logs"]
    assert log["checkpoint"]["size"] == 6 and log["checkpoint_saved"] and log["trusted_checkpoint"] is None
    assert (state / "usage-ledger.local%2Forg%2Facme.checkpoint").read_text() == sign(target)

    add_events(audit_client, 5)
    sign(target)
    code, report = verify(target, verifier_key, state, "--org", "acme")
    assert code == 0, report
    [log] = report["logs"]
    assert (log["trusted_checkpoint"]["size"], log["checkpoint"]["size"]) == (6, 11)

    table = ledgerctl("audit", "verify", "--target", target, "--verifier-key", verifier_key, "--state-dir", state)
    assert table.exit_code == 0 and "size 11" in table.stdout and "verified 12 entries in 2 logs" in table.stdout
    plain = ledgerctl("audit", "verify", "--target", target)
    assert plain.exit_code == 0 and "pass --verifier-key" in plain.stdout


def _flip(value: bytes, position: int = 0) -> bytes:
    return value[:position] + bytes([value[position] ^ 0x01]) + value[position + 1 :]


def _insert_forged_row(t: Any) -> None:
    """Shift entries 2.. up by one and insert a forged entry at 2 that chains correctly to entry 1."""
    rows = t.rows("org/acme")
    t("UPDATE entries SET seq = seq + 1000 WHERE log_id = 'org/acme' AND seq >= 2")
    t("UPDATE entries SET seq = seq - 999 WHERE log_id = 'org/acme' AND seq >= 1000")
    forged = dict(rows[2])
    forged["body"] = bytes(forged["body"]).replace(b'"A100"', b'"L4"')
    forged["event_id"] = "forged"
    encoded = entry_bytes("org/acme", 2, forged["kind"], forged["recorded_at"], forged["body"])
    forged["prev_hash"] = bytes(rows[1]["entry_hash"])
    forged["entry_hash"] = chain_hash(forged["prev_hash"], encoded)
    forged["subtree_hashes"] = leaf_hash(encoded)
    t(f"INSERT INTO entries ({', '.join(forged)}) VALUES ({', '.join(':' + c for c in forged)})", **forged)


def _swap_rows(t: Any) -> None:
    t("UPDATE entries SET seq = 1002 WHERE log_id = 'org/acme' AND seq = 2")
    t("UPDATE entries SET seq = 2 WHERE log_id = 'org/acme' AND seq = 3")
    t("UPDATE entries SET seq = 3 WHERE log_id = 'org/acme' AND seq = 1002")


def _update(column: str, value: Any, seq: int = 2) -> Any:
    return lambda t: t(f"UPDATE entries SET {column} = :v WHERE log_id = 'org/acme' AND seq = {seq}", v=value)


TAMPERINGS: list[tuple[str, Any, bool, int, str]] = [
    # (case, tamper, through the database, first bad entry, message)
    ("body byte", None, False, 2, "entry org/acme#2: stored hash does not match its bytes"),
    ("entry hash byte", None, False, 2, "entry org/acme#2: stored hash does not match its bytes"),
    ("index column", _update("endpoint_id", "ep-elsewhere"), True, 2, "entry org/acme#2: index columns differ"),
    ("Merkle node", _update("subtree_hashes", bytes(96), seq=3), True, 3, "entry org/acme#3: stored Merkle subtree"),
    ("deleted row", lambda t: t("DELETE FROM entries WHERE log_id = 'org/acme' AND seq = 2"), False, 2,
     "entry org/acme#2 is missing"),
    ("inserted row", _insert_forged_row, False, 3, "entry org/acme#3: previous hash does not match entry #2's hash"),
    ("reordered rows", _swap_rows, False, 2, "entry org/acme#2: previous hash does not match entry #1's hash"),
]  # fmt: skip


# Every case on SQLite; a representative subset on PostgreSQL (the checks are storage-independent, tampering is not).
_PG_CASES = ("body byte", "deleted row", "index column")
_TAMPER_PARAMS = [
    pytest.param(
        backend,
        *case,
        id=f"{backend}-{case[0]}",
        marks=[pytest.mark.postgres] if backend == "postgresql" else [],
    )
    for case in TAMPERINGS
    for backend in ("sqlite", "postgresql")
    if backend == "sqlite" or case[0] in _PG_CASES
]


@pytest.mark.parametrize(
    ("db_url", "case", "change", "database", "sequence", "message"), _TAMPER_PARAMS, indirect=["db_url"]
)
def test_verify_names_the_first_tampered_entry(
    audit_client: LedgerClient,
    add_events: AddEvents,
    tamper: TamperFactory,
    db_url: str,
    target: str,
    verifier_key: str,
    tmp_path: Path,
    case: str,
    change: Any,
    database: bool,
    sequence: int,
    message: str,
) -> None:
    add_events(audit_client, 6)
    sign(target)
    assert verify(target, verifier_key, tmp_path)[0] == 0
    entry = audit_client.entry("org/acme", 2)
    with tamper() as t:
        if case == "body byte":
            t("UPDATE entries SET body = :v WHERE log_id = 'org/acme' AND seq = 2", v=_flip(entry.body, 10))
        elif case == "entry hash byte":
            t("UPDATE entries SET entry_hash = :v WHERE log_id = 'org/acme' AND seq = 2", v=_flip(entry.entry_hash))
        else:
            change(t)
    extra = ["--database-url", db_url] if database else []
    code, report = verify(target, verifier_key, tmp_path, *extra)
    assert code == 1
    bad = report["first_failure"]
    assert bad["log_id"] == "org/acme" and bad["failed_sequence"] == sequence, bad
    assert message in bad["failure"]


def test_a_truncated_log_fails_against_its_checkpoint_and_the_saved_one(
    audit_client: LedgerClient,
    add_events: AddEvents,
    tamper: TamperFactory,
    target: str,
    verifier_key: str,
    tmp_path: Path,
) -> None:
    add_events(audit_client, 8)
    sign(target)
    assert verify(target, verifier_key, tmp_path)[0] == 0
    with tamper() as t:
        t.truncate("org/acme", 5)  # entries and head shortened consistently: the chain alone looks fine
    assert ledgerctl("audit", "verify", "--target", target, "--json").exit_code == 0
    code, report = verify(target, verifier_key, tmp_path)
    assert code == 1 and report["first_failure"]["failed_sequence"] == 5
    assert (
        "a checkpoint of 8 entries was signed but only 5 are stored (log truncated)"
        in report["first_failure"]["failure"]
    )
    with tamper() as t:
        t("DELETE FROM checkpoints WHERE log_id = 'org/acme'")  # the attacker removes the evidence too
    code, report = verify(target, verifier_key, tmp_path)
    assert code == 1 and report["first_failure"]["failed_sequence"] == 5
    assert (
        "8 entries was verified earlier but only 5 are stored now (log truncated)" in report["first_failure"]["failure"]
    )


def test_a_rebuilt_log_with_valid_hashes_fails_against_signatures_and_the_saved_checkpoint(
    audit_client: LedgerClient,
    add_events: AddEvents,
    tamper: TamperFactory,
    signed_server: RunningServer,
    target: str,
    verifier_key: str,
    tmp_path: Path,
) -> None:
    add_events(audit_client, 6)
    note = sign(target)
    (tmp_path / "trusted.note").write_text(note)
    assert verify(target, verifier_key, tmp_path / "state")[0] == 0
    bodies = [e.body.replace(b'"A100"', b'"L4"') for e in audit_client.entries("org/acme")]
    with tamper() as t:
        t.replace_log("org/acme", bodies, signed_server.ledger.clock())
    assert ledgerctl("audit", "verify", "--target", target).exit_code == 0  # chains alone cannot tell
    code, report = verify(target, verifier_key, tmp_path / "state")
    assert code == 1 and "not the signed checkpoint's" in report["first_failure"]["failure"]

    # Remove the checkpoints and have the ledger sign the forgery: only the auditor's memory catches it now.
    with tamper() as t:
        t("DELETE FROM checkpoints WHERE log_id = 'org/acme'")
    sign(target)
    code, report = verify(target, verifier_key, tmp_path / "state")
    assert (
        code == 1 and "of the checkpoint verified earlier (log rewritten since)" in report["first_failure"]["failure"]
    )
    assert verify(target, verifier_key, tmp_path / "fresh")[0] == 0  # an auditor with no memory is fooled...
    code, report = verify(target, verifier_key, tmp_path / "fresh2", "--trusted-checkpoint", tmp_path / "trusted.note")
    assert code == 1 and "log rewritten since" in report["first_failure"]["failure"]  # ...unless given a checkpoint


@sqlite_only
def test_a_checkpoint_signed_by_another_key_fails(
    audit_client: LedgerClient,
    add_events: AddEvents,
    tamper: TamperFactory,
    target: str,
    verifier_key: str,
    tmp_path: Path,
) -> None:
    add_events(audit_client, 4)
    sign(target)
    other = NoteSigner(generate_signer_key("usage-ledger.local"))
    code, report = verify(target, other.verifier_key, tmp_path)
    assert code == 1 and "no signature by key usage-ledger.local+" in report["first_failure"]["failure"]

    add_events(audit_client, 1)
    head = audit_client.head("org/acme")
    forged = sign_checkpoint(Checkpoint("usage-ledger.local/org/acme", head.size, head.root_hash), other)
    with tamper() as t:
        t(
            "INSERT INTO checkpoints (log_id, size, root_hash, note, signed_at) VALUES ('org/acme', :s, :r, :n, 0)",
            s=head.size,
            r=head.root_hash,
            n=forged,
        )
    code, report = verify(target, verifier_key, tmp_path)
    assert code == 1
    assert "the ledger's newest checkpoint does not verify" in report["first_failure"]["failure"]


@sqlite_only
def test_verify_usage_errors(target: str, verifier_key: str, tmp_path: Path) -> None:
    note = tmp_path / "n"
    note.write_text("usage-ledger.local/org/acme\n1\nAAAA\n")
    assert ledgerctl("audit", "verify", "--target", target, "--trusted-checkpoint", note).exit_code == 2
    bad = ledgerctl("audit", "verify", "--target", target, "--verifier-key", "x+y", "--json")
    assert bad.exit_code == 2 and "--verifier-key" in json.loads(bad.stdout)["error"]
    wrong = ledgerctl(
        "audit", "verify", "--target", target, "--verifier-key", verifier_key, "--trusted-checkpoint", note
    )
    assert wrong.exit_code == 2


# -- prove and check-proof --------------------------------------------------------------------------------------------


@sqlite_only
def test_prove_then_check_proof_offline_and_a_modified_proof_fails(
    audit_client: LedgerClient,
    add_events: AddEvents,
    signed_server: RunningServer,
    target: str,
    verifier_key: str,
    key_file: Path,
    tmp_path: Path,
) -> None:
    add_events(audit_client, 7)
    result = ledgerctl("audit", "prove", "--org", "acme", "--seq", "3", "--target", target)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["tree_size"] == 7 and document["entries"][0]["leaf_index"] == 3  # signed on demand
    assert document["verifier_key_name"] == "usage-ledger.local"
    proof = tmp_path / "proof.json"
    proof.write_text(result.stdout)
    signed_server.stop(grace=None)  # from here on there is no server

    checked = ledgerctl("audit", "check-proof", proof, "--verifier-key", verifier_key)
    assert checked.exit_code == 0, checked.output
    assert "verified" in checked.stdout and "org/acme#3" in checked.stdout
    key_as_file = tmp_path / "verifier.pub"
    key_as_file.write_text(verifier_key + "\n")
    as_json = ledgerctl("audit", "check-proof", proof, "--verifier-key", key_as_file, "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["entries"][0]["sequence"] == 3

    document["inclusion_proof"][0] = "00" * 32
    proof.write_text(json.dumps(document))
    failed = ledgerctl("audit", "check-proof", proof, "--verifier-key", verifier_key)
    assert failed.exit_code == 1 and "does NOT verify" in failed.stderr
    other = NoteSigner(generate_signer_key("usage-ledger.local")).verifier_key
    proof.write_text(result.stdout)
    assert ledgerctl("audit", "check-proof", proof, "--verifier-key", other).exit_code == 1
    assert ledgerctl("audit", "check-proof", proof).exit_code == 2  # a key is required
    assert ledgerctl("audit", "check-proof", tmp_path / "missing.json", "--verifier-key", other).exit_code == 2


@sqlite_only
def test_prove_without_signing_against_an_unsigned_size_refuses(
    audit_client: LedgerClient, add_events: AddEvents, target: str
) -> None:
    add_events(audit_client, 3)
    result = ledgerctl("audit", "prove", "--org", "acme", "--seq", "1", "--no-sign", "--json", "--target", target)
    assert result.exit_code == 1 and "no signed checkpoint of size 3" in json.loads(result.stdout)["error"]
    missing = ledgerctl("audit", "prove", "--org", "nobody", "--seq", "0", "--json", "--target", target)
    assert missing.exit_code == 1 and json.loads(missing.stdout)["code"] == "NOT_FOUND"
    # Without --json the refusal is a sentence on standard error, as every command's (docs/cli.md).
    text = ledgerctl("audit", "prove", "--org", "acme", "--seq", "1", "--no-sign", "--target", target)
    assert text.exit_code == 1 and "no signed checkpoint of size 3" in text.output
