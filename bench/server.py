"""A real `ledger-server` child process for the benchmarks, with its CPU time and memory read from /proc."""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_SERVING = re.compile(r"serving on [^ ]*:(\d+) ")


def server_command() -> list[str]:
    """The installed console script when there is one (what operators run), else the same entry point by module."""
    script = Path(sys.executable).parent / "ledger-server"
    if script.exists():
        return [str(script)]
    found = shutil.which("ledger-server")
    return [found] if found else [sys.executable, "-m", "server.main"]


class ServerProcess:
    """Starts `ledger-server --listen 127.0.0.1:0`, learns its port from its first line, waits until healthy."""

    def __init__(
        self, database_url: str, log_path: Path, *, extra_args: Sequence[str] = (), startup_timeout: float = 60.0
    ) -> None:
        self.database_url = database_url
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [
                *server_command(),
                *("--database-url", database_url, "--listen", "127.0.0.1:0", "--log-level", "WARNING"),
                # The figures in docs/benchmarks.md are of an unsigned server (PostgreSQL refuses to start without
                # a key or this flag); --server-arg=--signing-key=FILE measures a signing one.
                *(() if any(a.startswith("--signing-key") for a in extra_args) else ("--no-signing",)),
                *extra_args,
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.pid = self.process.pid
        try:
            self.port = self._read_port(startup_timeout)
            self.target = f"127.0.0.1:{self.port}"
            self._wait_healthy(startup_timeout)
        except BaseException:
            self.stop()
            raise

    def _read_port(self, timeout: float) -> int:
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise RuntimeError(f"ledger-server did not report its port within {timeout:.0f} s; see {self.log_path}")
            chunk = os.read(self.process.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"ledger-server exited with {self.process.wait()}; see {self.log_path}")
            line += chunk
        match = _SERVING.search(line.decode(errors="replace"))
        if match is None:
            raise RuntimeError(f"unexpected first line from ledger-server: {line!r}")
        return int(match.group(1))

    def _wait_healthy(self, timeout: float) -> None:
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout, wait_for_ready=True)
            if response.status != health_pb2.HealthCheckResponse.SERVING:
                raise RuntimeError(f"ledger-server is not serving: {response}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of every thread of the server so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def memory_kib(self) -> dict[str, int]:
        """VmRSS (now) and VmHWM (the resident high-water mark since start), in KiB."""
        values = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
        return values

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


class Profiler:
    """`py-spy record` attached to the server for one phase; collapsed stacks, summarised by bench.profile."""

    def __init__(self, pid: int, output: Path, *, rate: int = 250) -> None:
        py_spy = Path(sys.executable).parent / "py-spy"
        command = str(py_spy) if py_spy.exists() else shutil.which("py-spy")
        if command is None:
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.output = output
        self.process = subprocess.Popen(
            # --gil: only the thread holding the GIL is sampled, which is what bounds a Python server's throughput.
            [
                command,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--gil",
                "--output",
                str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # let it attach before the load starts

    def stop(self) -> Path:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.output
