"""One test per ledgerctl convention of docs/cli.md (issue #25 item 3), on real servers and real processes."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from client.cli import _unwrap, app
from client.global_options import MissingValue, lift_global_options
from client.instants import parse_instant
from ledger.timeutil import format_micros
from server.app import RunningServer, start_server
from server.tls import ServerTls
from tests.conftest import EXAMPLE_DAY, FixedClock
from tests.test_security_tls import issue_cert, make_ca

LOOKUP = ("support", "lookup", "--org", "acme", "--endpoint", "ep-llama", "--around", "2026-10-05 11:45")


@pytest.fixture(scope="module")
def day_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A plaintext server holding the example day (read-only for these tests)."""
    folder = tmp_path_factory.mktemp("conventions")
    server: RunningServer = start_server(f"sqlite:///{folder / 'day.db'}", "127.0.0.1:0", clock=FixedClock())
    target = f"127.0.0.1:{server.port}"
    assert ledgerctl("events", "ingest", str(EXAMPLE_DAY), "--target", target).returncode == 0
    yield target
    server.stop(grace=None)


def ledgerctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "COLUMNS": "120", "LEDGER_DATABASE_URL": "", "LEDGER_TARGET": "", **(env or {})}
    for name in ("LEDGER_API_KEY", "LEDGER_TLS_CA", "LEDGER_TLS_CERT", "LEDGER_TLS_KEY", "GRPC_VERBOSITY"):
        full.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "ledgerctl", *args], capture_output=True, text=True, timeout=120, env=full
    )


# -- times ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("2026-10-05T11:45:07.123456Z", "2026-10-05T11:45:07.123456Z"),
        ("2026-10-05T11:45:07+02:00", "2026-10-05T09:45:07.000000Z"),
        ("2026-10-05T11:45Z", "2026-10-05T11:45:00.000000Z"),
        ("2026-10-05t11:45z", "2026-10-05T11:45:00.000000Z"),
        ("2026-10-05 11:45", "2026-10-05T11:45:00.000000Z"),
        ("2026-10-05 11:45:07.5", "2026-10-05T11:45:07.500000Z"),
        ("2026-10-05", "2026-10-05T00:00:00.000000Z"),
        ("2026-10-05T11:45:07.123456000Z", "2026-10-05T11:45:07.123456Z"),
    ],
)
def test_times_are_rfc_3339_with_or_without_seconds_a_typed_minute_or_a_date(typed: str, meant: str) -> None:
    assert format_micros(parse_instant(typed)) == meant


@pytest.mark.parametrize("typed", ["yesterday", "2026-13-01", "2026-10-05T24:00Z", "2026-10-05T11:45:07.0000001Z"])
def test_a_bad_time_is_refused_naming_the_forms(typed: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|microsecond"):
        parse_instant(typed)


def test_every_time_option_takes_the_same_forms(day_server: str) -> None:
    # `usage --from` took RFC 3339 only and refused a bare date; `support lookup` took "YYYY-MM-DD HH:MM".
    usage = ledgerctl("usage", "--org", "acme", "--from", "2026-10-05", "--to", "2026-10-05 12:00", "--json",
                      "--target", day_server)  # fmt: skip
    assert usage.returncode == 0, usage.stderr
    lookup = ledgerctl(*LOOKUP, "--json", "--target", day_server)
    assert lookup.returncode == 0 and json.loads(lookup.stdout)["window"]["start"] == "2026-10-05T11:15:00.000000Z"
    bad = ledgerctl("usage", "--org", "acme", "--from", "noon", "--to", "2026-10-06", "--target", day_server)
    assert bad.returncode == 2 and "--from 'noon'" in bad.stderr and "RFC 3339" in bad.stderr


# -- global options ---------------------------------------------------------------------------------------------


def test_global_options_go_before_or_after_the_subcommand(day_server: str, tmp_path: Path) -> None:
    before = ledgerctl("--json", "--target", day_server, "log", "list")
    after = ledgerctl("log", "list", "--target", day_server, "--json")
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert json.loads(before.stdout) == json.loads(after.stdout)
    # --tls-* after the subcommand reach the connection as they do before it: a missing CA file is named.
    missing = ledgerctl("log", "list", "--tls-ca", str(tmp_path / "nope.pem"), "--target", day_server)
    assert missing.returncode == 2 and "nope.pem" in missing.stderr


def test_lifting_global_options_leaves_values_and_everything_after_a_double_dash() -> None:
    environ: dict[str, str] = {}
    args = ["log", "--api-key=k1", "head", "--org", "acme", "--tls-ca", "ca.pem", "--json", "--", "--target"]
    assert lift_global_options(args, environ) == ["log", "head", "--org", "acme", "--json", "--", "--target"]
    assert environ == {"LEDGER_API_KEY": "k1", "LEDGER_TLS_CA": "ca.pem"}
    with pytest.raises(MissingValue, match="--target"):
        lift_global_options(["log", "list", "--target"], {})


# -- money ------------------------------------------------------------------------------------------------------


def test_invoice_figures_are_in_cents_and_rated_amounts_exact(day_server: str) -> None:
    closed = ledgerctl("invoices", "close", "--org", "acme", "--at", "2026-10-05 12:00", "--target", day_server)
    assert closed.returncode == 0, closed.stderr
    lookup = ledgerctl(*LOOKUP, "--target", day_server)
    text = " ".join(lookup.stdout.split())
    # R21: an invoice's total in cents ("#1 $44.8728 of its $50.02": the lookup's exact part of it).
    assert re.search(r"#1 \$[0-9.]+ of its \$[0-9]+\.[0-9]{2},", text), text
    # R14: vol-models, 1200 GB for 12 intervals of 300 s = (1000 x $0.07 + 200 x $0.05) x 3600 / 2592000 = $1/9.
    assert "vol-models: 1200 GB, 3600 s in 12 intervals = $0.(1)" in text


# -- pipes, exit codes, terminals -------------------------------------------------------------------------------


def test_a_closed_pipe_ends_the_command_quietly_with_exit_0(day_server: str) -> None:
    env = {**os.environ, "COLUMNS": "80", "LEDGER_TARGET": day_server}
    for args in (LOOKUP, (*LOOKUP, "--json", "--details", "--tolerance", "12h")):
        process = subprocess.Popen([sys.executable, "-m", "ledgerctl", *args], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=env)  # fmt: skip
        assert process.stdout is not None and process.stderr is not None
        process.stdout.readline()  # `| head -1`
        process.stdout.close()
        assert process.wait(timeout=120) == 0
        with process.stderr:
            assert process.stderr.read() == b""


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tls")
    ca, ca_key, ca_cert = make_ca()
    other, _, _ = make_ca("somebody else's CA")
    server = issue_cert(ca_key, ca_cert, "ledger.test", None, server=True)
    files = {"ca": ca.cert, "other": other.cert, "cert": server.cert, "key": server.key}
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.pem"
        paths[name].write_bytes(data)
        paths[name].chmod(0o600)
    return paths


@pytest.fixture(scope="module")
def tls_target(tls_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('tls-ledger') / 'ledger.db'}"
    tls = ServerTls.from_files(tls_files["cert"], tls_files["key"])
    server = start_server(url, clock=FixedClock(), tls=tls, require_auth=True)
    yield f"127.0.0.1:{server.port}"
    server.stop(grace=None)


def test_exit_3_only_when_nothing_answers_and_tls_or_auth_failures_say_which(
    tls_files: dict[str, Path], tls_target: str, unused_port: int
) -> None:
    nothing = ledgerctl("log", "list", "--target", f"127.0.0.1:{unused_port}")
    assert nothing.returncode == 3 and "cannot reach the ledger" in nothing.stderr
    plaintext = ledgerctl("log", "list", "--target", tls_target)
    assert plaintext.returncode == 2 and "probably serves TLS" in plaintext.stderr, plaintext.stderr
    wrong_ca = ledgerctl("log", "list", "--tls-ca", str(tls_files["other"]), "--target", tls_target)
    assert wrong_ca.returncode == 2 and "did not sign" in wrong_ca.stderr, wrong_ca.stderr
    no_key = ledgerctl("log", "list", "--tls-ca", str(tls_files["ca"]), "--target", tls_target, "--json")
    assert no_key.returncode == 1, no_key.stderr
    answer = json.loads(no_key.stdout)
    assert answer["code"] == "UNAUTHENTICATED" and "--api-key" in answer["error"]
    # No gRPC core log line (`ssl_transport_security.cc ... Handshake failed`) reaches the terminal.
    for result in (plaintext, wrong_ca):
        assert "ssl_transport_security" not in result.stderr and "Handshake failed" not in result.stderr
        assert result.stderr.count("\n") <= 2, result.stderr


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_progress_bars_show_their_totals(day_server: str) -> None:
    """`audit verify` at a terminal: `2772/2775`-style counts, never `/?` (the bar is on standard error)."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm", "LEDGER_TARGET": day_server}
    process = subprocess.Popen([sys.executable, "-m", "ledgerctl", "audit", "verify", "--skip-rollups"],
                               stdout=subprocess.DEVNULL, stderr=terminal, env=env)  # fmt: skip
    os.close(terminal)
    seen = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    assert process.wait(timeout=120) in (0, 1)
    text = seen.decode(errors="replace")
    assert "/?" not in text
    assert "verifying org/acme" in text and re.search(r"\d+/[1-9]\d*", text), text[-500:]


# -- --json, help, tables ---------------------------------------------------------------------------------------


def _commands(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    commands = getattr(node, "commands", None)
    if commands is None:
        yield path, node
        return
    for name, child in commands.items():
        yield from _commands(child, (*path, name))


def test_every_command_takes_json() -> None:
    from typer.main import get_command

    lacking = [
        " ".join(path)
        for path, command in _commands(get_command(app))
        if not any("--json" in getattr(param, "opts", ()) for param in command.params)
    ]
    assert lacking == []


def test_help_texts_are_paragraphs_with_named_arguments() -> None:
    from typer.main import get_command

    runner = CliRunner()
    for path, _ in _commands(get_command(app)):
        shown = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"}).output
        usage = next(line for line in shown.splitlines() if "Usage:" in line)
        # Arguments in capitals: `{FILE}` (required), `[RULE]...`; never a lowercase `{file}` placeholder.
        assert re.search(r"[{\[][a-z_]+[}\]]", usage) is None, usage
        # At 200 columns every paragraph of the description is one line: none ends mid-sentence ("DIR for").
        assert " for\n" not in shown and " the\n" not in shown, shown
    assert (
        _unwrap("One line\n    wrapped here.\n\n    Second paragraph.") == "One line wrapped here.\n\nSecond paragraph."
    )


def test_usage_without_group_by_shows_no_empty_dimension_columns(day_server: str) -> None:
    shown = ledgerctl("usage", "--org", "acme", "--from", "2026-10-05", "--to", "2026-10-06", "--target", day_server)
    assert shown.returncode == 0, shown.stderr
    header = next(line for line in shown.stdout.splitlines() if "quantity" in line)
    for empty in ("endpoint", "kind", "instance", "worker"):
        assert empty not in header, header
    grouped = ledgerctl("usage", "--org", "acme", "--from", "2026-10-05", "--to", "2026-10-06",
                        "--group-by", "endpoint", "--target", day_server)  # fmt: skip
    assert "endpoint" in next(line for line in grouped.stdout.splitlines() if "quantity" in line)
