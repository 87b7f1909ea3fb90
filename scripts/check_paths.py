"""Fail when a tracked file names a path outside the repository: the project must stand alone (issue #21).

Three ways a file reaches out, each caught here:
- a relative path that climbs above the repository root, resolved from the file's own directory (a Markdown link)
  or, for every other file, also from the root (scripts and tests run there);
- an absolute path into a machine's working or home directories;
- a `Path(__file__)` walk with more `.parent` steps than the file is deep.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import PurePosixPath

# One or more `../` steps followed by a name: `(../)+name`.
_CLIMB = re.compile(r"(?<![\w.])((?:\.\./)+)([\w.-]+)")
# Machine-specific roots no repository file may name (a developer's checkout, home directories).
_ABSOLUTE = re.compile(r"(?<![\w.~-])/(?:work|home|Users|root)/[\w.-]+")
# Path(__file__).resolve() followed by .parent and .parents[N] steps, in any order.
_FILE_WALK = re.compile(r"Path\(__file__\)(?:\.resolve\(\))?((?:\.parent(?!s)|\.parents\[\d+\])+)")
_STEP = re.compile(r"\.parent(?!s)|\.parents\[(\d+)\]")


@dataclass(frozen=True)
class OutsidePath:
    """One place where a file names something outside the repository."""

    file: str
    line: int
    text: str
    why: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text!r} {self.why}"


def _escapes(start: PurePosixPath, climb: str) -> bool:
    """Whether `climb` (a run of `../`) taken from `start` (a directory relative to the root) leaves the root."""
    return climb.count("../") > len(start.parts)


def _walk_levels(steps: str) -> int:
    """How many directories up a `.parent` / `.parents[N]` chain goes from the file itself."""
    levels = 0
    for match in _STEP.finditer(steps):
        levels += 1 if match.group(1) is None else int(match.group(1)) + 1
    return levels


def outside_paths(file: str, text: str) -> list[OutsidePath]:
    """Every path in `text` (the content of tracked file `file`, relative to the root) that leaves the repository."""
    path = PurePosixPath(file)
    directory = path.parent if str(path.parent) != "." else PurePosixPath()
    markdown = path.suffix == ".md"
    found: list[OutsidePath] = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in _CLIMB.finditer(line):
            climb = match.group(1)
            where = [directory] if markdown else [directory, PurePosixPath()]
            if any(_escapes(start, climb) for start in where):
                found.append(OutsidePath(file, number, match.group(0), "climbs above the repository root"))
        for match in _ABSOLUTE.finditer(line):
            found.append(OutsidePath(file, number, match.group(0), "is an absolute path on one machine"))
        if path.suffix == ".py":
            for match in _FILE_WALK.finditer(line):
                # From the file, one level reaches its directory; len(parts) levels reach the root itself.
                if _walk_levels(match.group(1)) > len(path.parts):
                    found.append(OutsidePath(file, number, match.group(0), "walks above the repository root"))
    return found


def tracked_files(root: str) -> list[str]:
    listing = subprocess.run(["git", "-C", root, "ls-files", "-z"], check=True, capture_output=True).stdout
    return [name for name in listing.decode().split("\0") if name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="the repository to check (default: the current directory)")
    args = parser.parse_args(argv)
    found: list[OutsidePath] = []
    for name in tracked_files(args.root):
        try:
            with open(PurePosixPath(args.root) / name, encoding="utf-8") as f:
                content = f.read()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary files name no paths; a deleted but still tracked file has nothing to check
        found.extend(outside_paths(name, content))
    for item in found:
        print(item, file=sys.stderr)
    if found:
        print(f"{len(found)} path(s) reach outside the repository; it must carry what it uses", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
