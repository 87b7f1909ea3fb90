"""README.md's first session, typed as written, ends in a verification that checks signatures (issue #21).

The session's commands are read from the README itself and run with bash, in a directory laid out like the
repository's root (its `.venv` and `examples/`), against a server started as `scripts/serve` starts it: the
embedded default database, no key configured. Only the port differs (LEDGER_TARGET), so the test never meets
another server on 50051.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from tests.server_support import ledger_server

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def first_session_commands() -> list[str]:
    text = README.read_text()
    section = text[text.index("## A first session") :]
    section = section[: section.index("\n## ", 1)]
    [block] = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readme_setup_commands_are_exactly_serve_and_test() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert first_block is not None
    commands = [line.split("#", 1)[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["scripts/serve", "scripts/test"]
    serve = (ROOT / "scripts" / "serve").read_text()
    assert "scripts/dev-setup" in serve and "exec .venv/bin/ledger-server" in serve  # installs, then foreground


def test_the_readme_first_session_runs_as_typed_and_checks_the_printed_key(tmp_path: Path) -> None:
    commands = first_session_commands()
    assert commands[-1].startswith(".venv/bin/ledgerctl audit verify --verifier-key")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "COLUMNS": "200", "LEDGER_DATABASE_URL": ""}
    command = [str(ROOT / ".venv" / "bin" / "ledger-server")]
    with ledger_server("sqlite:///usage-ledger.db", command=command, cwd=tmp_path) as server:
        assert server.verifier_key is not None
        env["LEDGER_TARGET"] = server.target
        outputs = []
        for line in commands:
            run = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True)
            # The closer cuts the invoices within a second or so of the ingest (R17); a person typing the next
            # line takes longer than that, the test asks again for up to 30 s.
            deadline = time.monotonic() + 30
            while "invoices list" in line and "MONTH_END" not in run.stdout and time.monotonic() < deadline:
                time.sleep(0.5)
                run = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True)
            assert run.returncode == 0, (line, run.stdout, run.stderr)
            outputs.append(run.stdout)
    by_command = dict(zip(commands, outputs, strict=True))
    invoices = by_command[".venv/bin/ledgerctl invoices list --org acme"]
    # R17/R28: three threshold invoices cut in event time, then October's month-end (examples/README.md).
    assert [trigger for trigger in ("THRESHOLD", "MONTH_END") if trigger in invoices] == ["THRESHOLD", "MONTH_END"]
    assert "$50.02" in invoices and "$27.53" in invoices, invoices
    assert "ACTIVE" in by_command[".venv/bin/ledgerctl account show --org acme"]
    ingests = [out for line, out in zip(commands, outputs, strict=True) if "events ingest" in line]
    assert "3491 appended" in ingests[0] and "0 appended" in ingests[1]
    assert server.verifier_key in by_command[".venv/bin/ledgerctl audit verifier-key"]  # the key the server printed
    verified = outputs[-1]
    assert "verified" in verified
    # org/acme's row shows a checked signed checkpoint ("size N"), not "not checked" or "none yet".
    [acme_row] = [row for row in verified.splitlines() if "org/acme" in row]
    assert re.search(r"size \d+", acme_row) and "ok" in acme_row, verified
