"""Export and import: every stored field leaves, only verified hashes come back, and hashes survive any backend."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import func, select

from client.cli import app as cli_app
from ledger.errors import VerificationError
from ledger.export import EXPORT_FORMAT, ImportTargetNotEmpty, export_lines, import_export
from ledger.intake import Ledger
from ledger.log.audit import verify
from ledger.log.entry import GENESIS_HASH, SYSTEM_LOG, EntryKind, chain_hash, entry_bytes
from ledger.log.merkle import Frontier, leaf_hash
from ledger.log.note import NoteSigner, NoteVerifier, generate_signer_key, write_private_key_file
from ledger.log.signing import CheckpointSigner
from server.app import start_server
from storage.sql import SqlStore
from storage.sql.schema import entries, log_heads
from tests.cli_support import LedgerctlRunner
from tests.conftest import EXAMPLE_DAY, FixedClock

runner = LedgerctlRunner()


def ledgerctl() -> typer.Typer:
    """ledgerctl itself: `export` and `import` are two of its top-level commands."""
    return cli_app


def fill(url: str, events: int | None = None) -> SqlStore:
    """A ledger holding the example day (or its first `events` events), on a fixed clock."""
    store = SqlStore(url, clock=FixedClock())
    ledger = Ledger(store, clock=store.clock)
    lines = [json.loads(line) for line in EXAMPLE_DAY.read_text().splitlines() if line.strip()]
    if events is not None:  # the first workload events, numbered acme-000001 on (the day's HEARTBEATs left out)
        lines = [line for line in lines if line["type"] != "HEARTBEAT"][:events]
    for start in range(0, len(lines), 500):
        ledger.append_events(lines[start : start + 500])
    return store


def write_export(store: SqlStore, path: Path, log_ids: list[str]) -> bytes:
    path.write_text("".join(line + "\n" for line in export_lines(store, log_ids)), encoding="utf-8")
    return path.read_bytes()


def row_counts(store: SqlStore) -> tuple[int, int]:
    with store.reader.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(entries)).scalar_one(),
            conn.execute(select(func.count()).select_from(log_heads)).scalar_one(),
        )


@pytest.mark.postgres
def test_round_trip_sqlite_postgresql_sqlite_keeps_every_hash_identical(tmp_path: Path, pg_url: str) -> None:
    first_url = f"sqlite:///{tmp_path / 'first.db'}"
    last_url = f"sqlite:///{tmp_path / 'last.db'}"
    source = fill(first_url)
    heads = [source.head(log_id) for log_id in (SYSTEM_LOG, "org/acme")]
    source.close()
    app = ledgerctl()

    exported: list[bytes] = []
    for leg, (from_url, to_url) in enumerate(((first_url, pg_url), (pg_url, last_url))):
        result = runner.invoke(app, ["export", "--org", "acme", "--log", "system", "--database-url", from_url])
        assert result.exit_code == 0, result.stderr
        exported.append(result.stdout_bytes)
        path = tmp_path / f"leg-{leg}.jsonl"
        path.write_bytes(result.stdout_bytes)
        result = runner.invoke(app, ["import", str(path), "--database-url", to_url, "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["entries"] == heads[0].size + heads[1].size
    result = runner.invoke(app, ["export", "--all", "--database-url", last_url, "--output", str(tmp_path / "end")])
    assert result.exit_code == 0, result.stderr
    exported.append((tmp_path / "end").read_bytes())

    # Same bytes out of every backend: same sequences, recorded times, bodies and hashes, logs in the same order.
    assert exported[0] == exported[1] == exported[2]
    assert exported[0].count(b"\n") == 1 + heads[0].size + heads[1].size
    for url in (pg_url, last_url):
        store = SqlStore(url)
        try:
            assert [store.head(h.log_id) for h in heads] == heads
            report = verify(store)  # index columns and stored Merkle nodes were derived afresh: they must agree
            assert report.ok, report.first_failure()
        finally:
            store.close()


@pytest.mark.postgres
def test_an_imported_log_keeps_growing_on_its_new_backend(tmp_path: Path, pg_url: str) -> None:
    source = fill(f"sqlite:///{tmp_path / 'source.db'}", events=100)
    write_export(source, tmp_path / "acme.jsonl", [SYSTEM_LOG, "org/acme"])
    source.close()
    target = SqlStore(pg_url)
    import_export(target, tmp_path / "acme.jsonl")
    target.close()
    # A server on the imported database continues the chain and the Merkle tree from the imported head.
    running = start_server(pg_url, "127.0.0.1:0", clock=FixedClock())
    try:
        day = [json.loads(line) for line in EXAMPLE_DAY.read_text().splitlines()]
        results = running.ledger.append_events([e for e in day if e["type"] != "HEARTBEAT"][100:150])
        report = verify(running.ledger.store)
    finally:
        running.stop(grace=None)
    assert [r.sequence for r in results] == list(range(100, 150))
    assert report.ok, report.first_failure()


@pytest.mark.postgres
def test_export_through_the_api_equals_export_from_the_database(tmp_path: Path, pg_url: str) -> None:
    fill(pg_url, events=300).close()
    running = start_server(pg_url, "127.0.0.1:0")
    try:
        app = ledgerctl()
        through_api = runner.invoke(app, ["export", "--all", "--target", f"127.0.0.1:{running.port}"])
        from_database = runner.invoke(app, ["export", "--all", "--database-url", pg_url])
    finally:
        running.stop(grace=None)
    assert through_api.exit_code == 0 and from_database.exit_code == 0, through_api.stderr + from_database.stderr
    assert through_api.stdout_bytes == from_database.stdout_bytes


# -- refusals ----------------------------------------------------------------------------------------------------


def _edit(line: int, change: Callable[[dict[str, Any]], None]) -> Callable[[list[str]], list[str]]:
    def mutate(lines: list[str]) -> list[str]:
        record = json.loads(lines[line - 1])
        change(record)
        lines[line - 1] = json.dumps(record, sort_keys=True, separators=(",", ":"))
        return lines

    return mutate


def _body(record: dict[str, Any]) -> None:
    record["body"] = record["body"].replace('"A100"', '"H100 PRO"')


def _flip_hash(name: str) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        record[name] = ("0" if record[name][0] != "0" else "1") + record[name][1:]

    return change


def _header_size(record: dict[str, Any]) -> None:
    record["logs"][1]["size"] -= 1


def _header_root(record: dict[str, Any]) -> None:
    record["logs"][1]["root_hash"] = "ab" * 32


def _recorded_at(record: dict[str, Any]) -> None:
    record["recorded_at"] += 1


def _repeat_previous_event_id(record: dict[str, Any]) -> None:
    record["body"] = record["body"].replace("acme-000009", "acme-000008")


def _rehashed(mutate: Callable[[list[str]], list[str]]) -> Callable[[list[str]], list[str]]:
    """A forger who also recomputes every hash and the header: the chain checks pass, the content checks must not."""

    def forge(lines: list[str]) -> list[str]:
        lines = mutate(lines)
        header = json.loads(lines[0])
        records = [json.loads(line) for line in lines[1:]]
        for log in header["logs"]:
            previous, frontier, size = GENESIS_HASH, Frontier.empty(), 0
            for record in (r for r in records if r["log_id"] == log["log_id"]):
                encoded = entry_bytes(
                    record["log_id"], record["sequence"], record["kind"], record["recorded_at"], record["body"].encode()
                )
                record["previous_hash"] = previous.hex()
                previous = chain_hash(previous, encoded)
                record["entry_hash"] = previous.hex()
                frontier = frontier.append(leaf_hash(encoded))[0]
                size += 1
            log.update(size=size, head_hash=previous.hex(), root_hash=frontier.root().hex())
        return [json.dumps(r, sort_keys=True, separators=(",", ":")) for r in (header, *records)]

    return forge


# Lines of the file: 1 header, 2 the system log's price book, then line n is org/acme#(n - 3), event acme-(n - 2).
TAMPERINGS: list[tuple[str, Callable[[list[str]], list[str]], str]] = [
    ("body", _edit(6, _body), "line 6: entry org/acme#3: entry hash does not match its bytes"),
    ("recorded time", _edit(9, _recorded_at), "line 9: entry org/acme#6: entry hash does not match its bytes"),
    ("entry hash", _edit(5, _flip_hash("entry_hash")), "line 5: entry org/acme#2: entry hash does not match"),
    ("chain link", _edit(7, _flip_hash("previous_hash")), "line 7: entry org/acme#4: previous hash does not match"),
    ("deleted line", lambda lines: lines[:6] + lines[7:], "line 7: entry org/acme#5: expected sequence 4"),
    ("swapped lines", lambda lines: [*lines[:5], lines[6], lines[5], *lines[7:]], "line 6: entry org/acme#4: expected"),
    ("truncated", lambda lines: lines[:-1], "end of file: log org/acme: the header says 12 entries, 11 follow"),
    ("header size", _edit(1, _header_size), "line 14: entry org/acme#11: the header lists only 11 entries of org/acme"),
    ("header root", _edit(1, _header_root), "end of file: log org/acme: the header's Merkle root does not match"),
    ("not JSON", lambda lines: [*lines[:3], "{not json", *lines[4:]], "line 4: not valid JSON"),
    ("no header", lambda lines: lines[1:], "line 1: not a ledger export"),
    ("event id", _edit(11, _repeat_previous_event_id), "line 11: entry org/acme#8: entry hash does not match"),
    (
        "rehashed duplicate event id",
        _rehashed(_edit(11, _repeat_previous_event_id)),
        "line 11: entry org/acme#8: idempotency key 'acme-000008' appears twice in the log (R24)",
    ),
    (
        "rehashed bad body",
        _rehashed(_edit(4, lambda r: r.update(body='{"occurred_at":"yesterday"}'))),
        "line 4: entry org/acme#1: body is not a valid EVENT body",
    ),
]


@pytest.fixture(scope="module")
def good_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The system log and 12 events of org/acme, exported once for every tampering below."""
    directory = tmp_path_factory.mktemp("good")
    source = fill(f"sqlite:///{directory / 'source.db'}", events=12)
    write_export(source, directory / "good.jsonl", [SYSTEM_LOG, "org/acme"])
    source.close()
    return directory / "good.jsonl"


@pytest.mark.parametrize(("change", "mutate", "message"), TAMPERINGS, ids=[t[0] for t in TAMPERINGS])
def test_a_tampered_file_is_refused_naming_the_bad_line_and_nothing_is_imported(
    good_export: Path, tmp_path: Path, change: str, mutate: Callable[[list[str]], list[str]], message: str
) -> None:
    lines = good_export.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(mutate(lines)) + "\n")
    target = SqlStore(f"sqlite:///{tmp_path / 'target.db'}")
    try:
        with pytest.raises(VerificationError) as refused:
            import_export(target, bad)
        assert message in str(refused.value), change
        assert row_counts(target) == (0, 0)
    finally:
        target.close()
    # The same refusal through ledgerctl: exit 1, the line named, nothing imported.
    result = runner.invoke(ledgerctl(), ["import", str(bad), "--database-url", f"sqlite:///{tmp_path / 'cli.db'}"])
    assert result.exit_code == 1
    said = " ".join(result.stderr.split())  # rich wraps long lines at the terminal width
    assert "refused, nothing imported" in said and message.split(":")[0] in said


def test_import_refuses_a_target_that_already_holds_one_of_the_logs(db_url: str, tmp_path: Path) -> None:
    source = fill(f"sqlite:///{tmp_path / 'source.db'}", events=20)
    write_export(source, tmp_path / "acme.jsonl", ["org/acme"])
    source.close()
    target = SqlStore(db_url)
    try:
        import_export(target, tmp_path / "acme.jsonl")
        before = row_counts(target)
        with pytest.raises(ImportTargetNotEmpty, match=r"already holds org/acme \(20 entries\)"):
            import_export(target, tmp_path / "acme.jsonl")
        assert row_counts(target) == before
        assert verify(target).ok
    finally:
        target.close()


def test_a_body_that_is_not_utf8_travels_as_base64_byte_for_byte(tmp_path: Path) -> None:
    # UTF-16 JSON is still JSON to the parser, but not text a JSON Lines file can carry as a string.
    body = json.dumps({"idempotency_key": "k-1", "org_id": "acme"}).encode("utf-16")
    encoded = entry_bytes("org/acme", 0, EntryKind.STATE.value, 1_000_000, body)
    entry_hash = chain_hash(GENESIS_HASH, encoded)
    root = Frontier.empty().append(leaf_hash(encoded))[0].root()
    header = {
        "format": EXPORT_FORMAT,
        "version": 1,
        "encoding_version": 1,
        "logs": [{"log_id": "org/acme", "size": 1, "head_hash": entry_hash.hex(), "root_hash": root.hex()}],
    }
    entry = {
        "log_id": "org/acme",
        "sequence": 0,
        "kind": "STATE",
        "recorded_at": 1_000_000,
        "body_base64": base64.b64encode(body).decode(),
        "previous_hash": GENESIS_HASH.hex(),
        "entry_hash": entry_hash.hex(),
    }
    crafted = tmp_path / "crafted.jsonl"
    crafted.write_text(
        "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in (header, entry)), encoding="utf-8"
    )
    store = SqlStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        import_export(store, crafted)  # a version 1 file (no checkpoints) still imports
        assert store.get_entry("org/acme", 0).body == body
        header.update(version=2)
        header["logs"][0]["checkpoints"] = []
        again = "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in (header, entry))
        assert write_export(store, tmp_path / "again.jsonl", ["org/acme"]) == again.encode()
        assert verify(store).ok
    finally:
        store.close()


def test_export_usage_errors_and_unknown_logs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    fill(url, events=3).close()
    app = ledgerctl()
    assert runner.invoke(app, ["export", "--database-url", url]).exit_code == 2
    assert runner.invoke(app, ["export", "--all", "--org", "acme", "--database-url", url]).exit_code == 2
    unknown = runner.invoke(app, ["export", "--org", "nobody", "--database-url", url])
    assert unknown.exit_code == 1 and "org/nobody" in unknown.stderr
    assert runner.invoke(app, ["import", str(tmp_path / "missing.jsonl"), "--database-url", url]).exit_code == 2
    assert not list(tmp_path.glob("*.partial"))


# -- signed checkpoints travel with the logs ---------------------------------------------------------------------


def signed_ledger(url: str, key: str, events: int, sign_at: tuple[int, ...]) -> SqlStore:
    """The example day's first `events` events, with the org log's checkpoint signed after each of `sign_at`."""
    store = SqlStore(url, clock=FixedClock())
    ledger = Ledger(store, clock=store.clock)
    lines = [json.loads(line) for line in EXAMPLE_DAY.read_text().splitlines() if line.strip()][:events]
    signer = CheckpointSigner(store, NoteSigner(key))
    done = 0
    for size in (*sign_at, events):
        ledger.append_events(lines[done:size])
        done = size
        if size in sign_at:
            signer.sign("org/acme")
    return store


@pytest.mark.postgres
def test_checkpoints_travel_with_the_export_and_import_checks_them_against_the_entries(
    tmp_path: Path, pg_url: str
) -> None:
    """Checkpoints signed at 10 and 25 entries of a 40-entry log: both go out in the header, come back into
    PostgreSQL with their signatures checked, and `audit verify` of the imported log checks the newest against the
    imported entries."""
    key = generate_signer_key("usage-ledger.local")
    verifier_key = NoteSigner(key).verifier_key
    source = signed_ledger(f"sqlite:///{tmp_path / 'source.db'}", key, 40, (10, 25))
    stored = source.checkpoints("org/acme", 40)
    source.close()
    app = ledgerctl()
    exported = runner.invoke(app, ["export", "--org", "acme", "--database-url", f"sqlite:///{tmp_path / 'source.db'}"])
    assert exported.exit_code == 0, exported.stderr
    header = json.loads(exported.stdout.splitlines()[0])
    assert header["version"] == 2
    assert [(c["size"], c["note"]) for c in header["logs"][0]["checkpoints"]] == [(c.size, c.note) for c in stored]
    assert [c.size for c in stored] == [10, 25]
    path = tmp_path / "acme.jsonl"
    path.write_bytes(exported.stdout_bytes)

    imported = runner.invoke(
        app, ["import", str(path), "--database-url", pg_url, "--verifier-key", verifier_key, "--json"]
    )
    assert imported.exit_code == 0, imported.output
    summary = json.loads(imported.stdout)
    assert (summary["checkpoints"], summary["signatures_checked"]) == (2, True)
    assert summary["logs"][0]["checkpoints"] == [10, 25]
    target = SqlStore(pg_url)
    try:
        assert target.checkpoints("org/acme", 40) == stored
    finally:
        target.close()
    audit = LedgerctlRunner().invoke(
        cli_app,
        [
            "audit",
            "verify",
            "--database-url",
            pg_url,
            "--verifier-key",
            verifier_key,
            "--state-dir",
            str(tmp_path / "s"),
            "--json",
        ],
    )
    assert audit.exit_code == 0, audit.output
    [log] = [log for log in json.loads(audit.stdout)["logs"] if log["log_id"] == "org/acme"]
    assert log["checkpoint"]["size"] == 25


def _checkpoint_root(record: dict[str, Any]) -> None:
    record["logs"][0]["checkpoints"][0]["root_hash"] = "00" * 32


def test_import_refuses_a_checkpoint_the_entries_or_the_key_do_not_bear_out(tmp_path: Path) -> None:
    """Three forgeries, each refused with nothing imported: a checkpoint's listed root edited (its note says
    otherwise); a note validly signed by the ledger's key but of another log's content (the root of the imported
    entries differs); a note of these very entries signed by another key (caught when the verifier key is given)."""
    key, other = generate_signer_key("usage-ledger.local"), generate_signer_key("usage-ledger.local")
    real = signed_ledger(f"sqlite:///{tmp_path / 'real.db'}", key, 20, (10,))
    good = tmp_path / "good.jsonl"
    write_export(real, good, ["org/acme"])
    real.close()
    lines = good.read_text().splitlines()

    # A ledger of other content (the day's events from the 5th on), its checkpoint at 10 signed by the same key.
    elsewhere = SqlStore(f"sqlite:///{tmp_path / 'elsewhere.db'}", clock=FixedClock())
    day = [json.loads(line) for line in EXAMPLE_DAY.read_text().splitlines() if line.strip()]
    Ledger(elsewhere, clock=elsewhere.clock).append_events(day[5:15])
    foreign = CheckpointSigner(elsewhere, NoteSigner(key)).sign("org/acme")[0]
    elsewhere.close()
    # These entries' checkpoint, signed by another key.
    resigned = signed_ledger(f"sqlite:///{tmp_path / 'resigned.db'}", other, 20, (10,))
    [other_signed] = resigned.checkpoints("org/acme", 20)
    resigned.close()

    def with_checkpoint(note: str, root: bytes) -> list[str]:
        header = json.loads(lines[0])
        header["logs"][0]["checkpoints"][0].update(note=note, root_hash=root.hex())
        return [json.dumps(header, sort_keys=True, separators=(",", ":")), *lines[1:]]

    cases = [
        (_edit(1, _checkpoint_root)(list(lines)), None, "line 1: log org/acme: checkpoint 1: its note is of size 10"),
        (with_checkpoint(foreign.note, foreign.root_hash), None, "the signed checkpoint of size 10 has root"),
        (
            with_checkpoint(other_signed.note, other_signed.root_hash),
            NoteVerifier(NoteSigner(key).verifier_key),
            "line 1: log org/acme: checkpoint 1 (size 10)",
        ),
    ]
    for number, (changed, verifier, message) in enumerate(cases):
        bad = tmp_path / f"bad-{number}.jsonl"
        bad.write_text("\n".join(changed) + "\n", encoding="utf-8")
        target = SqlStore(f"sqlite:///{tmp_path / f'target-{number}.db'}")
        try:
            with pytest.raises(VerificationError, match=re.escape(message)):
                import_export(target, bad, verifier)
            assert row_counts(target) == (0, 0) and target.checkpoints("org/acme", 20) == []
        finally:
            target.close()
    # The re-signed note is of these entries: without the ledger's verifier key only its root can be checked.
    unkeyed = tmp_path / "unkeyed.jsonl"
    unkeyed.write_text("\n".join(with_checkpoint(other_signed.note, other_signed.root_hash)) + "\n", encoding="utf-8")
    target = SqlStore(f"sqlite:///{tmp_path / 'unkeyed.db'}")
    try:
        [log] = import_export(target, unkeyed)
        assert [c.size for c in log.checkpoints] == [10]
    finally:
        target.close()


@pytest.mark.postgres
def test_export_through_the_api_carries_the_newest_checkpoint_as_the_database_has_it(
    tmp_path: Path, pg_url: str
) -> None:
    key_file = tmp_path / "ledger.key"
    write_private_key_file(key_file, generate_signer_key("usage-ledger.local"))
    signed_ledger(pg_url, key_file.read_text().strip(), 30, (30,)).close()
    running = start_server(pg_url, "127.0.0.1:0", signing_key=key_file, checkpoint_every=0, checkpoint_seconds=0)
    try:
        app = ledgerctl()
        through_api = runner.invoke(app, ["export", "--org", "acme", "--target", f"127.0.0.1:{running.port}"])
        from_database = runner.invoke(app, ["export", "--org", "acme", "--database-url", pg_url])
    finally:
        running.stop(grace=None)
    assert through_api.exit_code == 0 and from_database.exit_code == 0, through_api.stderr + from_database.stderr
    assert json.loads(through_api.stdout.splitlines()[0])["logs"][0]["checkpoints"][0]["size"] == 30
    assert through_api.stdout_bytes == from_database.stdout_bytes  # the note and its signing time, exactly
