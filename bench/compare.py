"""Two commits' benchmarks in one run: `python -m bench.compare BEFORE AFTER [--rounds N] [-- bench.run args]`.

A restructuring must not slow ingest or dispute lookups (issue #24). Figures from different days on a shared
machine do not compare, so this checks both commits out (detached worktrees under a temporary directory), then runs
each commit's own `bench.run` alternately, BEFORE, AFTER, BEFORE, AFTER..., with this interpreter and the commit's
code first on PYTHONPATH. It prints every figure both runs report, as the median over rounds with the ratio
AFTER/BEFORE, and writes them to bench/results/compare-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
DEFAULT_RUN_ARGS = ["--quick", "--backend", "sqlite", "--phases", "ingest,biglog,lookup"]


def figures(document: dict[str, Any]) -> dict[str, float]:
    """Every number under `results`, keyed by its path: results.sqlite.ingest.events_per_second and so on."""
    found: dict[str, float] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, int | float) and not isinstance(node, bool):
            found[path] = float(node)

    walk(document.get("results", {}), "")
    return found


def run_commit(checkout: Path, run_args: list[str], output: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": f"{checkout}{os.pathsep}{checkout / 'proto'}"}
    command = [sys.executable, "-m", "bench.run", *run_args, "--output", str(output)]
    subprocess.run(command, cwd=checkout, env=env, check=True, stdout=sys.stderr)
    return figures(json.loads(output.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", help="the commit before the change (any git revision)")
    parser.add_argument("after", help="the commit after it")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each commit, alternated (default 2)")
    parser.epilog = f"bench.run arguments go after `--` (default: {' '.join(DEFAULT_RUN_ARGS)})."
    argv = sys.argv[1:] if argv is None else argv
    own, run_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    args = parser.parse_args(own)
    run_args = run_args or DEFAULT_RUN_ARGS
    revisions = {
        name: subprocess.run(
            ["git", "rev-parse", "--short=12", rev], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        for name, rev in (("before", args.before), ("after", args.after))
    }
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="ledger-compare-") as scratch:
        checkouts = {}
        for name, commit in revisions.items():
            checkouts[name] = Path(scratch) / name
            subprocess.run(
                ["git", "worktree", "add", "--detach", "--quiet", str(checkouts[name]), commit], cwd=REPO, check=True
            )
        try:
            for round_number in range(args.rounds):
                for name in ("before", "after"):
                    print(f"round {round_number + 1}/{args.rounds}: {name} ({revisions[name]})", file=sys.stderr)
                    output = Path(scratch) / f"{name}-{round_number}.json"
                    runs[name].append(run_commit(checkouts[name], run_args, output))
        finally:
            for checkout in checkouts.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=REPO, check=False)
    shared = sorted(set.intersection(*(set(r) for r in runs["before"] + runs["after"])))
    rows: list[dict[str, Any]] = []
    for key in shared:
        before = statistics.median(r[key] for r in runs["before"])
        after = statistics.median(r[key] for r in runs["after"])
        rows.append({"figure": key, "before": before, "after": after, "ratio": after / before if before else None})
    width = max((len(row["figure"]) for row in rows), default=10)
    print(f"{'figure':<{width}}  {'before':>14}  {'after':>14}  after/before")
    for row in rows:
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "-"
        print(f"{row['figure']:<{width}}  {row['before']:>14,.2f}  {row['after']:>14,.2f}  {ratio}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    output = RESULTS_DIR / f"compare-{time.strftime('%Y%m%dT%H%M%S')}.json"
    document = {"revisions": revisions, "rounds": args.rounds, "run_args": run_args, "figures": rows, "runs": runs}
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nresults: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
