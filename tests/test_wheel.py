"""The built wheel, installed without -e into a fresh virtual environment, gives working commands (issue #21).

The editable install the rest of the suite runs on reads every module from the source tree, so it hid a package
missing from the wheel (ledger.rating): `pip install .` gave commands that crashed at once. This test installs the
wheel as a container image or a deployment would, and runs the installed `ledger-server` and `ledgerctl` away from
the source tree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_DAY
from tests.server_support import ledger_server

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("ledger", "storage", "wire", "server", "client", "ledgerctl")

pytestmark = pytest.mark.slow


def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600, cwd=cwd)


def source_packages() -> set[str]:
    found = {
        ".".join(init.parent.relative_to(ROOT).parts) for top in SHIPPED for init in (ROOT / top).rglob("__init__.py")
    }
    found |= {".".join(init.parent.relative_to(ROOT / "proto").parts) for init in (ROOT / "proto").rglob("__init__.py")}
    return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the bin directory of a fresh venv it was installed into with its dependencies)."""
    work = tmp_path_factory.mktemp("wheel")
    # From a clean copy of the repository's files: a build/ directory left in the tree by an earlier build would
    # put its stale copies of packages into the wheel and hide one missing from the package list.
    source = work / "source"
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", work / "dist", source, cwd=work)
    assert built.returncode == 0, built.stderr
    [wheel] = (work / "dist").glob("usage_ledger-*.whl")
    venv.EnvBuilder(with_pip=True).create(work / "venv")
    bin_dir = work / "venv" / "bin"
    pip = run(bin_dir / "python", "-m", "pip", "install", "--quiet", wheel, cwd=work)
    assert pip.returncode == 0, pip.stderr
    return wheel, bin_dir


def test_the_wheel_holds_every_package_of_the_source_tree(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    packaged = {name.rsplit("/", 1)[0].replace("/", ".") for name in names if name.endswith("/__init__.py")}
    assert source_packages() <= packaged, sorted(source_packages() - packaged)
    assert "ledger.rating" in packaged  # the one a hand-written list once missed
    assert not any(name.startswith(("tests/", "bench/", "scripts/")) for name in names)
    assert "storage/sql/migrations/script.py.mako" in names  # Alembic's template, data not code


def test_both_installed_commands_print_the_project_version(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, bin_dir = installed
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for command in ("ledger-server", "ledgerctl"):
        result = run(bin_dir / command, "--version", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"{command} {version}"
    # The rules every charge cites ship with the command (client/billing-rules.md links to docs/billing-rules.md).
    rule = run(bin_dir / "ledgerctl", "rules", "R10", "--json", cwd=tmp_path)
    assert rule.returncode == 0, rule.stderr
    assert json.loads(rule.stdout)[0]["title"] == "Granularity"
    where = run(
        bin_dir / "python", "-c", "import ledger.rating, server.main; print(server.main.__file__)", cwd=tmp_path
    )
    assert where.returncode == 0 and "site-packages" in where.stdout, where  # the wheel's copy, not the tree's


def test_the_installed_server_and_ledgerctl_ingest_read_and_verify_a_signed_ledger(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, bin_dir = installed
    ledgerctl = bin_dir / "ledgerctl"
    events = tmp_path / "events.jsonl"
    events.write_text("".join(EXAMPLE_DAY.read_text().splitlines(keepends=True)[:40]))
    database = tmp_path / "usage-ledger.db"
    with ledger_server(f"sqlite:///{database}", command=[str(bin_dir / "ledger-server")], cwd=tmp_path) as server:
        assert server.verifier_key is not None  # signed from the first start, its key printed
        target = ("--target", server.target)
        ingested = run(ledgerctl, "events", "ingest", events, "--json", *target, cwd=tmp_path)
        assert ingested.returncode == 0, ingested.stderr
        assert json.loads(ingested.stdout)["appended"] == 40
        head = run(ledgerctl, "log", "head", "--org", "acme", "--json", *target, cwd=tmp_path)
        assert head.returncode == 0 and json.loads(head.stdout)["size"] >= 40, head
        served_key = run(ledgerctl, "audit", "verifier-key", *target, cwd=tmp_path)
        assert served_key.stdout.strip() == server.verifier_key
        signed = run(ledgerctl, "audit", "checkpoint", "--org", "acme", "--sign", *target, cwd=tmp_path)
        assert signed.returncode == 0, signed.stderr
        verify = [ledgerctl, "audit", "verify", "--verifier-key", server.verifier_key, "--json", *target]
        verified = run(*verify, "--state-dir", tmp_path / "state", cwd=tmp_path)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        report = json.loads(verified.stdout)
        assert report["ok"] and report["checkpoints_checked"]
        [acme] = [log for log in report["logs"] if log["log_id"] == "org/acme"]
        assert acme["checkpoint"] is not None and acme["checkpoint"]["size"] >= 40
        # A different pinned key fails the same ledger.
        other = run(bin_dir / "python", "-c", _OTHER_KEY, cwd=tmp_path).stdout.strip()
        refused = run(*verify[:4], other, "--json", *target, "--state-dir", tmp_path / "state2", cwd=tmp_path)
        assert refused.returncode == 1 and not json.loads(refused.stdout)["ok"]


_OTHER_KEY = (
    "from ledger.log.note import NoteSigner, generate_signer_key; "
    "print(NoteSigner(generate_signer_key('usage-ledger.local')).verifier_key)"
)
