"""The narrow storage interface the core appends through and reads from; adapters live in storage/sql."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, NamedTuple, Protocol

from ledger.log.entry import Entry, EntryHead, EntryKind, LogHead

if TYPE_CHECKING:
    from ledger.events import UsageEvent
    from ledger.export import VerifiedEntry, VerifiedLog
    from ledger.log.signing import StoredCheckpoint
    from ledger.plans import PlanHistory
    from ledger.pricebook import PriceHistory
    from ledger.rating import OrgRating, StorageCharge, UnitRun
    from ledger.rating.serving_time import RequestSummary, StartedSpan, WindowLifecycles


# IndexColumns and Appended are built for every ingested event: as named tuples they are immutable values like
# frozen dataclasses, at a quarter of the construction cost. (NewEntry stays a dataclass: its `index` field would
# shadow tuple.index.)
class IndexColumns(NamedTuple):
    """Query columns derived from an entry's body; audit verify re-derives them and compares."""

    org_id: str | None = None
    endpoint_id: str | None = None
    workload_id: str | None = None
    request_id: str | None = None
    occurred_at: int | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An entry to append. `index.event_id` (when set) is the idempotency key within the log (R24)."""

    log_id: str
    kind: EntryKind
    body: bytes
    index: IndexColumns


class Appended(NamedTuple):
    """Where a NewEntry landed; `duplicate` when its idempotency key was already there with the same body."""

    log_id: str
    sequence: int
    entry_hash: bytes
    duplicate: bool


class LedgerStore(Protocol):
    """Append-only storage of per-log hash chains and their Merkle subtree hashes."""

    def append(self, entries: Sequence[NewEntry], *, expected_sizes: Mapping[str, int] | None = None) -> list[Appended]:
        """Append atomically, all or nothing; serialized per log so chains never fork or gap.

        Raises EventConflict when an idempotency key exists with a different body, and LogMoved when a log named
        in `expected_sizes` does not hold exactly that many entries (a conditional append, R17).
        """
        ...

    def get_entry(self, log_id: str, sequence: int) -> Entry: ...

    def list_entries(self, log_id: str, start: int, limit: int) -> list[Entry]: ...

    def iter_entries(self, log_id: str, start: int = 0, stop: int | None = None) -> Iterator[Entry]: ...

    def head(self, log_id: str) -> LogHead: ...

    def list_logs(self, after: str, limit: int) -> list[LogHead]: ...

    def subtree_hashes(self, log_id: str, nodes: Sequence[tuple[int, int]]) -> list[bytes]: ...

    def audit_rows(self, log_id: str, start: int = 0) -> Iterator[tuple[Entry, IndexColumns, bytes]]:
        """(entry, stored index columns, stored subtree hashes) in sequence order, for audit verification."""
        ...

    def entries_of_kind(self, log_id: str, kinds: Sequence[str]) -> list[Entry]:
        """Every entry of the given non-EVENT kinds in a log, in sequence order, without scanning the log."""
        ...

    def close(self) -> None: ...


class DisputeLookups(Protocol):
    """Dispute lookups (R27, ledger.dispute.DisputeSource): each answers from an index, never by scanning a log."""

    def endpoint_window_entries(self, org_id: str, endpoint_id: str, start: int, end: int) -> list[Entry]:
        """Entries of one endpoint with occurred_at in [start, end], in occurred_at order."""
        ...

    def request_entries(self, request_id: str, org_id: str | None = None) -> list[Entry]:
        """Entries naming a request, in every org's log unless `org_id` is given."""
        ...

    def workload_entries(self, log_id: str, workload_ids: Sequence[str]) -> list[Entry]:
        """Every entry of the given workloads of one log, in sequence order."""
        ...

    def live_workloads(self, org_id: str, endpoint_id: str, at: int) -> list[str]:
        """Workloads of an endpoint with a WORKLOAD_UP before `at` and no WORKLOAD_STOPPED or BOOT_FAILED before it."""
        ...

    def running_evidence(self, log_id: str, workload_ids: Sequence[str]) -> tuple[int | None, dict[str, int]]:
        """R28: the log's latest HEARTBEAT and each workload's latest event time, from an index."""
        ...

    def endpoint_orgs(self, endpoint_id: str) -> list[str]:
        """Orgs whose logs hold entries of an endpoint."""
        ...


# Log: what the log engine (ledger.log) and import read or write beside LedgerStore.


class SubtreeSource(Protocol):
    """Stored perfect-subtree hashes of many logs (storage.sql.SqlStore and storage.memory.MemoryStore are two)."""

    def subtree_hashes(self, log_id: str, nodes: Sequence[tuple[int, int]]) -> list[bytes]: ...


class ProofSource(SubtreeSource, Protocol):
    """What proving entries reads (ledger.log.proofs.prove_entries): the log head, stored nodes and entries."""

    def head(self, log_id: str) -> LogHead: ...

    def entries_at(self, log_id: str, sequences: Sequence[int]) -> list[Entry]:
        """The entries of one log at the given sequence numbers (those that exist), in sequence order, in one read."""
        ...


class LogImporter(Protocol):
    """Import's writer (ledger.export.import_export): persists what import verified, checks nothing itself."""

    def import_logs(self, logs: Sequence[VerifiedLog], verified: Iterator[VerifiedEntry]) -> int:
        """Create `logs` (none may exist yet: ImportTargetNotEmpty) with the entries `verified` yields, their heads
        and checkpoints, in one transaction: an error, from `verified` too, writes nothing. Returns the count."""
        ...


# Usage: the rollups, a view derived from each org log (storage/sql/rollups.py persists them). The follower
# (ledger/usage/follower.py) is the one caller of RollupCursor; usage queries and billing read RollupReads.


class RolledSessionLike(Protocol):
    """What a usage query needs of one rated session: its dimensions and its priced unit runs (R10)."""

    @property
    def endpoint_id(self) -> str: ...
    @property
    def workload_kind(self) -> str: ...
    @property
    def instance_type(self) -> str: ...
    @property
    def worker_type(self) -> str: ...
    @property
    def unit_seconds(self) -> int: ...
    @property
    def runs(self) -> tuple[UnitRun, ...]: ...


class RolledStorageLike(Protocol):
    """One rated storage interval (R13, R14; R8 bills a development workload's nothing)."""

    @property
    def endpoint_id(self) -> str: ...
    @property
    def storage_kind(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def exact_amount(self) -> Fraction: ...
    @property
    def gigabytes(self) -> Decimal | None: ...
    @property
    def interval_seconds(self) -> int | None: ...
    @property
    def development(self) -> bool: ...


class RollupCursor(Protocol):
    """The rollups' cursor over each org log (how many of its entries, and of the system log's, they reflect) and
    the step that moves it. Only the follower calls the writing methods."""

    def reflected_size(self, org_id: str) -> int | None:
        """The org log size the rollups reflect when they are current with it and the system log, else None.
        A read: it never writes, so a reader of current rollups never queues behind appends."""
        ...

    def apply_next(self, org_id: str, prices: PriceHistory, plans: PlanHistory) -> tuple[int, bool]:
        """One transaction holding the cursor's lock (so any number of processes apply each entry once): apply the
        entries appended after the cursor, a bounded chunk of them, and move the cursor past them. Returns (the
        org log size now reflected, whether that is the log's head)."""
        ...

    def drop(self, org_id: str) -> None:
        """Delete every rollup row of the org and its cursor: the next apply_next starts from the log's start."""
        ...

    def workload_count(self, org_id: str) -> int: ...

    def lag(self) -> dict[str, int]:
        """Per org: the entries of its log not applied yet."""
        ...


class RollupReads(Protocol):
    """Reads of the rollups as the cursor left them; a reader asks the follower to be current first."""

    def sessions_in(
        self,
        org_id: str,
        start: int,
        end: int,
        endpoint_id: str | None,
        prices: PriceHistory,
        plans: PlanHistory,
        as_of: int | None = None,
    ) -> Sequence[RolledSessionLike]: ...

    def storage_in(self, org_id: str, start: int, end: int, endpoint_id: str | None) -> Sequence[RolledStorageLike]: ...

    def billing_rating(
        self,
        org_id: str,
        prices: PriceHistory,
        plans: PlanHistory,
        *,
        changed_from: int,
        units_from: int | None,
    ) -> OrgRating: ...


class RollupStore(RollupCursor, RollupReads, Protocol):
    """Both halves, as one SQL adapter (storage.sql.rollups.UsageRollups) implements them."""


# Billing --------------------------------------------------------------------------------------------------------
# What billing (ledger/billing/) reads beyond LedgerStore. storage/sql implements it.


class InvoiceEntries(Protocol):
    """An org log's INVOICE entries by reference, so a reader parses only the invoices it has not parsed yet (every
    dispute lookup, R27, reads all of an org's invoices; a month's invoice of a busy org is a large body)."""

    def kind_refs(self, log_id: str, kind: str) -> list[tuple[int, bytes]]:
        """(sequence, entry hash) of every entry of one non-EVENT kind in a log, in sequence order, from an index."""
        ...

    def entries_at(self, log_id: str, sequences: Sequence[int]) -> list[Entry]:
        """The entries of a log at the given sequences (those that exist), in sequence order."""
        ...


# Dispute --------------------------------------------------------------------------------------------------------
# What a dispute lookup (R27, ledger/dispute/) reads: index-backed entry reads, the usage rollups it rates long
# sessions from, and signed checkpoints for proving what it cites. storage/sql implements them.


class DisputeSource(DisputeLookups, Protocol):
    """The narrow, index-backed reads a reconstruction needs, and the connection and snapshot it reads under
    (storage.sql.SqlStore is one)."""

    def entry_head(self, log_id: str, sequence: int) -> EntryHead: ...

    def entries_of_kind(self, log_id: str, kinds: Sequence[str]) -> list[Entry]: ...

    def session(self) -> AbstractContextManager[None]:
        """Every read inside on one connection (a lookup makes a score of small reads); a no-op where reads need
        no connection."""
        ...

    def snapshot(self) -> AbstractContextManager[None]:
        """Every read inside sees one state of the store, so an append landing mid-lookup is in all of the answer
        or none of it; a no-op for a store whose reads cannot interleave with appends."""
        ...


class IndexedSource(DisputeSource, Protocol):
    """The further reads the rollup-backed lookup uses (storage.sql.SqlStore has them)."""

    def workload_entries_between(
        self, log_id: str, workload_ids: Sequence[str], start: int, end: int, *, requests: bool = True
    ) -> dict[str, list[Entry]]: ...

    def entries_at(self, log_id: str, sequences: Sequence[int]) -> list[Entry]: ...

    def entry_heads(self, log_id: str, sequences: Sequence[int]) -> list[EntryHead]: ...


class ServingMeasure(Protocol):
    """One workload's closed requests' union (R25) as the rollups keep it, measured over any span."""

    def measure(self, start: int, end: int) -> int:
        """µs of [start, end) inside the union."""
        ...


class SessionIndex(Protocol):
    """Rollups that let a lookup rate a long session without reading its every request (storage.sql.rollups
    implements it, caught up to the log before the lookup starts)."""

    def window_lifecycles_and_storage(
        self, org_id: str, endpoint_id: str, start: int, end: int, entries_to: int
    ) -> tuple[WindowLifecycles, list[tuple[StorageCharge, bytes]]]: ...

    def lifecycles_and_summaries(
        self, log_id: str, workload_ids: Iterable[str]
    ) -> tuple[dict[str, list[tuple[UsageEvent, int]]], dict[int, bytes], dict[str, RequestSummary]]: ...

    def request_spans(self, log_id: str, reaches: dict[str, tuple[int, int]]) -> dict[str, list[StartedSpan]]: ...

    def window_request_spans(
        self, log_id: str, ranges: dict[str, tuple[int, int, int]], limit: int, asked: tuple[str, str] | None
    ) -> tuple[dict[str, tuple[int, list[StartedSpan]]], dict[int, bytes]]: ...

    def serving_union(self, log_id: str, workload_id: str, summary: RequestSummary) -> ServingMeasure: ...


class LookupStart(NamedTuple):
    """What a dispute lookup of one org reads first: its entries of the kinds asked (ACCOUNT and ADJUSTMENT), the
    (seq, entry hash) of its INVOICE entries, the org log size the rollups reflect when they are current with it
    and the system log (None: behind), and the system log's size."""

    entries: list[Entry]
    invoice_refs: list[tuple[int, bytes]]
    applied: int | None
    system_log_size: int | None


class DisputeRollups(SessionIndex, RollupCursor, Protocol):
    """The usage rollups a lookup rates from, passed in by whoever builds the lookup (the server); behind the log,
    the lookup has their follower (ledger/usage/follower.py) bring them current through RollupCursor."""

    def lookup_start(self, org_id: str, kinds: Sequence[str], ref_kind: str) -> LookupStart:
        """The org log's entries of `kinds`, the refs of its `ref_kind` entries and the rollups' state, together
        (one round trip on PostgreSQL)."""
        ...


class CheckpointedSource(ProofSource, Protocol):
    """What proving a lookup's cited entries reads (R27): what proving reads (ProofSource) and each log's newest
    signed checkpoint."""

    def latest_checkpoint(self, log_id: str) -> StoredCheckpoint | None: ...
