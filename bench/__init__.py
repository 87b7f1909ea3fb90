"""Benchmarks of the usage ledger (issue #9): one command, `python -m bench.run`; see docs/benchmarks.md."""
