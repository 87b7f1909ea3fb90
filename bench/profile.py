"""Summarise py-spy's collapsed stacks: where the server's GIL-holding time goes, by function."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

# Frames of this checkout's own files are named relative to it, wherever it was cloned.
_CHECKOUT = str(Path(__file__).resolve().parents[1]) + "/"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


def _name(frame: str) -> str:
    """`append (storage/sql/store.py:120)` -> `storage/sql/store.py:append` (line numbers dropped)."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("/site-packages/", _CHECKOUT, "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{match['func']}"


def summarise(collapsed: Path, top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample shares per function, largest first."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"function": f, "share": round(n / total, 4), "samples": n} for f, n in counter.most_common(top)]

    return {"samples": total, "self": share(own), "inclusive": share(inclusive)}
