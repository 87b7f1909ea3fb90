"""Audit verification rate (ledger.log.audit) and inclusion-proof latency (ledger.log.merkle) on a big org log."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from typing import Any

from ledger.log import audit, merkle
from storage.sql import SqlStore


def verify_rate(store: SqlStore, log_id: str) -> dict[str, Any]:
    """Time ledger.log.audit.verify over one log, from entry 0 to its head."""
    t0 = time.perf_counter()
    report = audit.verify(store, [log_id])
    elapsed = time.perf_counter() - t0
    failure = report.first_failure()
    if failure is not None:
        raise RuntimeError(f"the benchmark log does not verify: {failure.failure}")
    return {
        "log_id": log_id,
        "entries": report.entries,
        "seconds": round(elapsed, 3),
        "entries_per_second": round(report.entries / elapsed, 1),
    }


def rederive_rate(store: SqlStore, log_id: str, org_id: str) -> dict[str, Any]:
    """Time re-deriving every invoice of one org log from its raw entries (ledger.billing.rederive, what
    `ledgerctl audit verify` runs after the chains), reading the whole log as an auditor through the API does."""
    from ledger.billing.rederive import rederive_invoices
    from ledger.log.entry import SYSTEM_LOG

    system = list(store.iter_entries(SYSTEM_LOG))
    read = 0

    def seen(_: object) -> None:
        nonlocal read
        read += 1

    t0 = time.perf_counter()
    findings = rederive_invoices(org_id, store.iter_entries(log_id), system, seen)
    elapsed = time.perf_counter() - t0
    bad = [f for f in findings if not f.ok]
    if bad:
        raise RuntimeError(f"invoice #{bad[0].number} of the benchmark log does not re-derive: {bad[0].differences}")
    return {
        "log_id": log_id,
        "entries": read,
        "invoices": len(findings),
        "invoice_sequences": [f.sequence for f in findings],
        "invoice_notes": [f.note for f in findings],
        "seconds": round(elapsed, 3),
        "entries_per_second": round(read / elapsed, 1),
    }


def rollup_check_rate(store: SqlStore, log_id: str, org_id: str) -> dict[str, Any] | None:
    """Time re-deriving one org's usage rollups in a scratch store and comparing them row by row
    (storage.sql.rollup_check, what `ledgerctl audit verify --database-url` runs last); None when the rollups
    have not caught up yet (the lookup phase catches them up). The entries are read without the chain check, which
    verify_rate times on its own."""
    from storage.sql.rollup_check import check_org_rollups

    t0 = time.perf_counter()
    result = check_org_rollups(store, org_id, lambda wanted, stop: store.iter_entries(wanted, 0, stop))
    elapsed = time.perf_counter() - t0
    if result.applied_size is None:
        return None
    if result.differences:
        raise RuntimeError(f"the benchmark log's rollups do not re-derive: {result.differences[0]}")
    return {
        "log_id": log_id,
        "entries": result.applied_size,
        "rows": result.rows,
        "seconds": round(elapsed, 3),
        "entries_per_second": round(result.applied_size / elapsed, 1),
    }


class _LogNodes:
    """merkle.NodeSource for one log of the store."""

    def __init__(self, store: SqlStore, log_id: str) -> None:
        self.store = store
        self.log_id = log_id

    def subtree_hashes(self, nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        return self.store.subtree_hashes(self.log_id, nodes)


def inclusion_proofs(store: SqlStore, log_id: str, count: int, seed: int = 11) -> dict[str, Any] | None:
    """Latency of merkle.inclusion_proof against SqlStore.subtree_hashes; every proof is then checked."""
    if not hasattr(merkle, "inclusion_proof"):
        return None
    head = store.head(log_id)
    rng = random.Random(seed)
    indexes = [rng.randrange(head.size) for _ in range(count)]
    source = _LogNodes(store, log_id)
    for index in indexes[:20]:  # warm-up
        merkle.inclusion_proof(index, head.size, source)
    times = []
    proofs = []
    for index in indexes:
        t0 = time.perf_counter()
        proofs.append(merkle.inclusion_proof(index, head.size, source))
        times.append(time.perf_counter() - t0)
    for index, proof in zip(indexes, proofs, strict=True):
        leaf = merkle.leaf_hash(store.get_entry(log_id, index).encoded())
        merkle.verify_inclusion(leaf, index, head.size, proof, head.root_hash)
    ordered = sorted(times)
    return {
        "tree_size": head.size,
        "count": count,
        "hashes_mean": round(statistics.fmean(len(p) for p in proofs), 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[min(count - 1, int(count * 0.99))] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }
