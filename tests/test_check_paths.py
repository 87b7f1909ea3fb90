"""scripts/check_paths.py: scripts/lint fails on any tracked path that reaches outside the repository (issue #21)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_paths.py"
# Written in pieces so that this file itself names no outside path (the checker reads it too).
UP = "../"
SIBLING = "shared-notes"


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_paths", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_paths"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


check_paths = _checker()


def whys(file: str, text: str) -> list[str]:
    return [found.why for found in check_paths.outside_paths(file, text)]


def test_markdown_link_to_a_sibling_of_the_checkout_is_caught() -> None:
    assert whys("README.md", f"[rules]({UP}{SIBLING}/rules.md)") == ["climbs above the repository root"]
    assert whys("docs/billing.md", f"[rules]({UP}{UP}{SIBLING}/rules.md)") == ["climbs above the repository root"]


def test_markdown_link_up_to_the_root_is_fine() -> None:
    assert whys("docs/billing.md", f"[readme]({UP}README.md), [audit](audit.md)") == []


def test_code_climbing_from_the_root_is_caught_even_when_its_directory_is_deeper() -> None:
    # Tests and scripts run from the root, where one step up already leaves the repository.
    assert whys("tests/test_x.py", f'open("{UP}{SIBLING}/vectors.json")') == ["climbs above the repository root"]


def test_absolute_machine_paths_are_caught() -> None:
    home = "/" + "home/someone/ledger.db"
    work = "/" + "work/main/"
    assert whys("bench/profile.py", f'MARKERS = ("{work}",)\nDB = "{home}"') == [
        "is an absolute path on one machine",
        "is an absolute path on one machine",
    ]


def test_file_walks_past_the_root_are_caught_and_walks_to_it_are_not() -> None:
    to_root = "Path(__file__).resolve().parents[1]"
    assert whys("tests/conftest.py", f"ROOT = {to_root}\nDATA = Path(__file__).parent") == []
    assert whys("tests/conftest.py", f"OUT = {to_root}.parent") == ["walks above the repository root"]
    two_up = "Path(__file__).resolve()" + ".parents[2]"
    assert whys("tests/conftest.py", f"OUT = {two_up}") == ["walks above the repository root"]


def test_the_repository_names_nothing_outside_itself() -> None:
    run = subprocess.run([sys.executable, str(SCRIPT), "--root", str(ROOT)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_a_tracked_file_reaching_out_fails_the_check_naming_file_and_line(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "README.md").write_text(f"# x\n\nSee [the rules]({UP}{SIBLING}/rules.md).\n")
    (tmp_path / "untracked.md").write_text(f"[not tracked]({UP}{SIBLING}/x.md)\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "README.md"], check=True)
    run = subprocess.run([sys.executable, str(SCRIPT), "--root", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 1
    assert f"README.md:3: '{UP}{SIBLING}' climbs above the repository root" in run.stderr
    assert "untracked" not in run.stderr
