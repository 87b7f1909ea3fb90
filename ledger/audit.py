"""Audit verification: recompute every chain link, Merkle node and index column from the stored bytes alone."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ledger.core import derive_index
from ledger.entry import GENESIS_HASH, Entry, LogHead, chain_hash
from ledger.errors import NotFound, VerificationError
from ledger.merkle import Frontier, leaf_hash
from ledger.store import IndexColumns

Progress = Callable[[str, int], None]  # (log id, entries verified so far in that log)


class AuditSource(Protocol):
    """What verification reads: the store itself, or the API (which exposes no index columns or stored nodes)."""

    def head(self, log_id: str) -> LogHead: ...

    def list_logs(self, after: str, limit: int) -> list[LogHead]: ...

    def audit_rows(self, log_id: str, start: int = 0) -> Iterator[tuple[Entry, IndexColumns | None, bytes | None]]: ...


@dataclass(frozen=True)
class LogVerification:
    """The outcome for one log: how far it verified, and the first failure if any."""

    log_id: str
    size: int
    root_hash: bytes
    head_hash: bytes
    failure: str | None = None
    failed_sequence: int | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass
class AuditReport:
    logs: list[LogVerification] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(log.ok for log in self.logs)

    @property
    def entries(self) -> int:
        return sum(log.size for log in self.logs)

    def first_failure(self) -> LogVerification | None:
        return next((log for log in self.logs if not log.ok), None)


def verify_log(store: AuditSource, log_id: str, progress: Progress | None = None) -> LogVerification:
    """Verify one log from entry 0 to its head; never raises for a bad log, reports the first bad entry."""
    head = store.head(log_id)
    frontier = Frontier.empty()
    previous = GENESIS_HASH
    expected = 0
    try:
        for entry, stored_index, subtrees in store.audit_rows(log_id):
            sequence = entry.sequence
            if sequence != expected:
                missing = "missing" if sequence > expected else "out of order"
                raise _Bad(expected, f"entry {log_id}#{expected} is {missing} (next stored is #{sequence})")
            if entry.previous_hash != previous:
                raise _Bad(
                    sequence, f"entry {log_id}#{sequence}: previous hash does not match entry #{sequence - 1}'s hash"
                )
            encoded = entry.encoded()
            if chain_hash(previous, encoded) != entry.entry_hash:
                raise _Bad(
                    sequence,
                    f"entry {log_id}#{sequence}: stored hash does not match its bytes (body or header altered)",
                )
            try:
                derived = derive_index(entry.kind, json.loads(entry.body))
            except (ValueError, KeyError) as err:
                raise _Bad(
                    sequence, f"entry {log_id}#{sequence}: body is not a valid {entry.kind.value} body ({err})"
                ) from err
            # A source that does not expose index columns or stored nodes (the API) passes None: skip those checks.
            if stored_index is not None and derived != stored_index:
                raise _Bad(
                    sequence,
                    f"entry {log_id}#{sequence}: index columns differ from the body ({_diff(derived, stored_index)})",
                )
            frontier, expected_subtrees = frontier.append(leaf_hash(encoded))
            if subtrees is not None and b"".join(expected_subtrees) != subtrees:
                raise _Bad(
                    sequence, f"entry {log_id}#{sequence}: stored Merkle subtree hashes do not match the entries"
                )
            previous = entry.entry_hash
            expected += 1
            if progress is not None and expected % 1000 == 0:
                progress(log_id, expected)
        if expected != head.size:
            raise _Bad(
                expected,
                f"log {log_id}: head says {head.size} entries but {expected} are stored (truncated or extended)",
            )
        if head.head_hash != previous:
            raise _Bad(expected - 1, f"log {log_id}: head hash does not match entry #{expected - 1}")
        if head.root_hash != frontier.root():
            raise _Bad(expected - 1, f"log {log_id}: head's Merkle root does not match the entries")
    except _Bad as bad:
        return LogVerification(log_id, expected, frontier.root(), previous, str(bad), bad.sequence)
    except (ValueError, TypeError) as err:  # a stored row that cannot even be decoded (kind, numbers)
        message = f"entry {log_id}#{expected}: stored row is unreadable ({err})"
        return LogVerification(log_id, expected, frontier.root(), previous, message, expected)
    if progress is not None:
        progress(log_id, expected)
    return LogVerification(log_id, expected, frontier.root(), previous)


def all_log_ids(store: AuditSource) -> Iterator[str]:
    after = ""
    while True:
        heads = store.list_logs(after, 500)
        for head in heads:
            yield head.log_id
        if len(heads) < 500:
            return
        after = heads[-1].log_id


def verify(store: AuditSource, log_ids: list[str] | None = None, progress: Progress | None = None) -> AuditReport:
    report = AuditReport()
    for log_id in log_ids if log_ids is not None else list(all_log_ids(store)):
        try:
            report.logs.append(verify_log(store, log_id, progress))
        except NotFound:
            report.logs.append(LogVerification(log_id, 0, b"", b"", f"log {log_id} does not exist", None))
    return report


def require_verified(report: AuditReport) -> None:
    """For callers that want an exception rather than a report."""
    bad = report.first_failure()
    if bad is not None:
        raise VerificationError(bad.failure or "verification failed")


class _Bad(Exception):
    def __init__(self, sequence: int, message: str) -> None:
        super().__init__(message)
        self.sequence = sequence


def _diff(derived: object, stored: object) -> str:
    names = ("org_id", "endpoint_id", "workload_id", "request_id", "occurred_at", "event_id")
    return ", ".join(
        f"{n}: body says {getattr(derived, n)!r}, column says {getattr(stored, n)!r}"
        for n in names
        if getattr(derived, n) != getattr(stored, n)
    )
