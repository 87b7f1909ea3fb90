"""A real `ledger-server` child process as an operator runs it: its startup lines read, its port and verifier key."""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

SERVING_RE = re.compile(r"serving on [^ ]*:(\d+) ")
VERIFIER_KEY_RE = re.compile(r"^[^\s+]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*$")
UNSIGNED_LINE = "checkpoints are not signed"


@dataclass
class StartedServer:
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    port: int = 0
    verifier_key: str | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stderr(self) -> str:
        """Everything the server wrote to stderr so far (a file, so a chatty server never blocks on a full pipe)."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


def module_command() -> list[str]:
    """ledger-server from this test run's interpreter (the editable install under test)."""
    return [sys.executable, "-m", "server.main"]


def _read_startup(server: StartedServer, timeout: float) -> None:
    """Read stdout lines until the signing announcement is complete: the verifier key, or that nothing is signed."""
    stdout = server.process.stdout
    assert stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buffered = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not selector.select(remaining):
            raise AssertionError(f"ledger-server did not finish starting within {timeout} s: {server.lines}")
        chunk = os.read(stdout.fileno(), 4096)
        if not chunk:
            raise AssertionError(f"ledger-server exited with {server.process.wait()}: {server.lines}")
        buffered += chunk
        *complete, buffered = buffered.split(b"\n")
        for raw in complete:
            line = raw.decode()
            server.lines.append(line)
            if match := SERVING_RE.search(line):
                server.port = int(match.group(1))
            elif VERIFIER_KEY_RE.match(line):
                server.verifier_key = line
                return
            elif UNSIGNED_LINE in line:
                return


@contextmanager
def ledger_server(
    database_url: str,
    *args: str,
    command: Sequence[str] | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Iterator[StartedServer]:
    """Start `ledger-server --database-url URL --listen 127.0.0.1:0 ARGS`, wait for its startup lines, stop it after."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [*(command or module_command()), "--database-url", database_url, "--listen", "127.0.0.1:0", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        server = StartedServer(process, log)
        try:
            _read_startup(server, timeout)
            yield server
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            assert process.stdout is not None
            process.stdout.close()
