"""Audit verification: recompute every chain link, Merkle node and index column from the stored bytes alone."""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import pickle
import struct
import subprocess
import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ledger.errors import NotFound, VerificationError
from ledger.intake import derive_index
from ledger.log.entry import ENCODING_VERSION, GENESIS_HASH, Entry, EntryKind, LogHead, chain_hash
from ledger.log.merkle import Frontier, leaf_hash, node_hash
from ledger.ports import IndexColumns
from ledger.timeutil import format_micros

Progress = Callable[[str, int], None]  # (log id, entries verified so far in that log)


class AuditSource(Protocol):
    """What verification reads: the store itself, or the API (which exposes no index columns or stored nodes)."""

    def head(self, log_id: str) -> LogHead: ...

    def list_logs(self, after: str, limit: int) -> list[LogHead]: ...

    def audit_rows(self, log_id: str, start: int = 0) -> Iterator[tuple[Entry, IndexColumns | None, bytes | None]]: ...


# What PagedAuditSource.audit_pages returns for each entry, in this order: the stored columns as the database
# driver gives them (ints, str and bytes), each one checked as audit_rows' values would be.
AUDIT_COLUMNS = (
    "seq",
    "kind",
    "recorded_at",
    "body",
    "prev_hash",
    "entry_hash",
    "subtree_hashes",
    "org_id",
    "endpoint_id",
    "workload_id",
    "request_id",
    "occurred_at",
    "event_id",
)


@runtime_checkable
class PagedAuditSource(AuditSource, Protocol):
    """A source that can also hand over raw rows a page at a time (the SQL store): verification then builds no
    Entry or IndexColumns per row, which costs more than the hashing itself."""

    def audit_pages(self, log_id: str, start: int = 0, stop: int | None = None) -> Iterator[Sequence[Sequence[Any]]]:
        """Rows of AUDIT_COLUMNS in [start, stop) in sequence order, a page (a few thousand rows) at a time."""
        ...

    def audit_opener(self) -> Callable[[], PagedAuditSource] | None:
        """A picklable way for another process to open the same source, or None (verification stays in-process)."""
        ...


# A log at least this long is verified by two processes, one from each end of it: the checks are CPU-bound, and the
# helper's start-up (about a third of a second) is repaid from a few hundred thousand entries on.
PARALLEL_FROM = 300_000


@dataclass(frozen=True)
class LogVerification:
    """The outcome for one log: how far it verified, and the first failure if any."""

    log_id: str
    size: int
    root_hash: bytes
    head_hash: bytes
    failure: str | None = None
    failed_sequence: int | None = None
    # The Merkle root after each of verify_log's `roots_at` sizes the log reached, rebuilt in the same pass.
    roots: dict[int, bytes] = field(default_factory=dict, compare=False)

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


def verify_log(
    store: AuditSource, log_id: str, progress: Progress | None = None, roots_at: Collection[int] = ()
) -> LogVerification:
    """Verify one log from entry 0 to its head; never raises for a bad log, reports the first bad entry.

    `roots_at`: sizes (say, of signed checkpoints) at which to note the Merkle root in LogVerification.roots.
    """
    head = store.head(log_id)
    check = _LogCheck(log_id, roots_at=frozenset(roots_at))
    helper: _Helper | None = None
    try:
        if isinstance(store, PagedAuditSource):
            if head.size >= PARALLEL_FROM:
                helper = _Helper.start(store, log_id, _seam(head.size), head.size, check.roots_at)
            for rows in store.audit_pages(log_id, 0, None if helper is None else helper.begin):
                check.page(rows)
                if progress is not None:
                    progress(log_id, check.expected)
            if helper is not None:
                # The helper checked [begin, size) from its own first row on; it stands if this process ended
                # exactly where it began, and takes it from there. Otherwise carry on here, as one process would.
                if check.expected == helper.begin:
                    result = helper.result()
                    if result is not None:
                        check.join(result)
                helper.stop()
                for rows in store.audit_pages(log_id, check.expected):
                    check.page(rows)
                    if progress is not None:
                        progress(log_id, check.expected)
        else:
            for entry, stored_index, subtrees in store.audit_rows(log_id):
                check.entry(entry, stored_index, subtrees)
                if check.expected in check.roots_at:
                    check.note_root()
                if progress is not None and check.expected % 1000 == 0:
                    progress(log_id, check.expected)
        check.head(head)
    except _Bad as bad:
        root = check.root()
        return LogVerification(log_id, check.expected, root, check.previous, str(bad), bad.sequence, check.roots)
    except (ValueError, TypeError) as err:  # a row the source itself could not decode (kind, numbers)
        message = f"entry {log_id}#{check.expected}: stored row is unreadable ({err})"
        root = check.root()
        return LogVerification(log_id, check.expected, root, check.previous, message, check.expected, check.roots)
    finally:
        if helper is not None:
            helper.stop()
    if progress is not None:
        progress(log_id, check.expected)
    return LogVerification(log_id, check.expected, check.root(), check.previous, roots=check.roots)


def _seam(size: int) -> int:
    """Where a helper takes over a log of `size` entries. It starts about a second late (a new interpreter
    importing SQLAlchemy), so it gets a little less than half."""
    return size // 2 + size // 32


class _LogCheck:
    """One log's verification so far: the next sequence expected, the chain head and the Merkle frontier.

    `entry` is the reference check of one entry. `rows` does the same checks on raw database rows with bytes,
    hashlib and the frontier's hash list directly, building no per-entry objects; any row it would not accept
    (a failed check, an unexpected type) goes through `entry`, so failures and their messages are the reference's.
    """

    def __init__(
        self, log_id: str, start: int = 0, previous: bytes = GENESIS_HASH, roots_at: frozenset[int] = frozenset()
    ) -> None:
        self.log_id = log_id
        self.expected = start
        self.previous = previous
        self.stack: list[bytes] = []  # the frontier's perfect-subtree hashes, largest first
        self.roots_at = roots_at
        self.roots: dict[int, bytes] = {}
        # A helper's roots_at inside its part: (size, its own frontier then, how many _Deferred came before).
        self.partial_roots: list[tuple[int, list[bytes], int]] = []
        # A check starting inside the log (a helper's) lacks the frontier left of `start`: where a leaf's subtrees
        # reach into it, it checks what it can and leaves the rest here for the joiner (_Deferred).
        self.deferred: list[_Deferred] | None = [] if start else None
        log = log_id.encode()
        self._framing = _framing(bytes((ENCODING_VERSION,)) + len(log).to_bytes(2, "big") + log)
        self._minutes: dict[int, str] = {}

    def _minute(self, minute: int) -> str:
        """format_micros' text up to the seconds of a minute ("2026-09-20T12:00:"); "" where it does not round-trip
        through parse_rfc3339_micros (before 1970 or past 9999), so no body matches and the reference check decides."""
        if not 0 <= minute < _LAST_MINUTE:
            return ""
        if len(self._minutes) >= 100_000:
            self._minutes.clear()
        prefix = self._minutes[minute] = format_micros(minute * 60_000_000)[:17]
        return prefix

    def root(self) -> bytes:
        return Frontier(self.expected, tuple(self.stack)).root()

    def head(self, head: LogHead) -> None:
        """After the last stored entry: the head row must describe exactly the entries verified."""
        expected = self.expected
        if expected != head.size:
            raise _Bad(
                expected,
                f"log {self.log_id}: head says {head.size} entries but {expected} are stored (truncated or extended)",
            )
        if head.head_hash != self.previous:
            raise _Bad(expected - 1, f"log {self.log_id}: head hash does not match entry #{expected - 1}")
        if head.root_hash != self.root():
            raise _Bad(expected - 1, f"log {self.log_id}: head's Merkle root does not match the entries")

    def entry(self, entry: Entry, stored_index: IndexColumns | None, subtrees: bytes | None) -> None:
        """Check the next entry; a source that does not expose index columns or stored nodes (the API) passes None."""
        log_id = self.log_id
        previous = self.previous
        sequence = entry.sequence
        if sequence != self.expected:
            missing = "missing" if sequence > self.expected else "out of order"
            raise _Bad(self.expected, f"entry {log_id}#{self.expected} is {missing} (next stored is #{sequence})")
        if entry.previous_hash != previous:
            raise _Bad(
                sequence, f"entry {log_id}#{sequence}: previous hash does not match entry #{sequence - 1}'s hash"
            )
        encoded = entry.encoded()
        if chain_hash(previous, encoded) != entry.entry_hash:
            raise _Bad(
                sequence, f"entry {log_id}#{sequence}: stored hash does not match its bytes (body or header altered)"
            )
        try:
            derived = derive_index(entry.kind, json.loads(entry.body))
        except (ValueError, KeyError, AttributeError) as err:
            raise _Bad(
                sequence, f"entry {log_id}#{sequence}: body is not a valid {entry.kind.value} body ({err})"
            ) from err
        if stored_index is not None and derived != stored_index:
            raise _Bad(
                sequence,
                f"entry {log_id}#{sequence}: index columns differ from the body ({_diff(derived, stored_index)})",
            )
        # The leaf closes one perfect subtree per trailing 1-bit of its index (ledger.log.merkle.Frontier.append).
        stack = self.stack
        merges = (sequence ^ (sequence + 1)).bit_length() - 1
        local = min(merges, len(stack)) if self.deferred is not None else merges
        h = leaf_hash(encoded)
        expected_subtrees = [h]
        for k in range(1, local + 1):
            h = node_hash(stack[-k], h)
            expected_subtrees.append(h)
        if local < merges and subtrees is not None:
            checked = b"".join(expected_subtrees)
            if subtrees[: len(checked)] != checked:
                raise _Bad(
                    sequence, f"entry {log_id}#{sequence}: stored Merkle subtree hashes do not match the entries"
                )
            assert self.deferred is not None
            self.deferred.append(
                _Deferred(sequence, h, merges - local, subtrees[len(checked) :], previous, list(stack))
            )
            stack.clear()  # what the leaf closes now includes nodes left of `start`: they are the joiner's
        else:
            if subtrees is not None and b"".join(expected_subtrees) != subtrees:
                raise _Bad(
                    sequence, f"entry {log_id}#{sequence}: stored Merkle subtree hashes do not match the entries"
                )
            if merges:
                del stack[-merges:]
            stack.append(h)
        self.previous = entry.entry_hash
        self.expected = sequence + 1

    def note_root(self) -> None:
        if self.deferred is None:
            self.roots[self.expected] = self.root()
        else:  # the helper lacks the frontier left of its start: the joiner completes it
            self.partial_roots.append((self.expected, list(self.stack), len(self.deferred)))

    def page(self, rows: Sequence[Sequence[Any]]) -> None:
        """`rows`, cut where the log reaches a size of roots_at to note the root there."""
        base = self.expected
        start = 0
        for size in sorted(s for s in self.roots_at if base < s <= base + len(rows)):
            self.rows(rows[start : size - base])
            start = size - base
            if self.expected == size:
                self.note_root()
        self.rows(rows[start:] if start else rows)

    def join(self, helper: _HelperResult) -> None:
        """Take over from a helper that checked the rest of the log from where this check stands, raising the
        first failure a single pass would have met: at the seam, in a subtree spanning it, or the helper's own."""
        if helper.first_previous is not None and helper.first_previous != self.previous:
            seq = self.expected
            raise _Bad(seq, f"entry {self.log_id}#{seq}: previous hash does not match entry #{seq - 1}'s hash")
        stack = self.stack
        partial_roots = iter(helper.partial_roots)
        partial = next(partial_roots, None)
        for replayed, deferred in enumerate(helper.deferred):
            while partial is not None and partial[2] == replayed:
                self.roots[partial[0]] = Frontier(partial[0], (*stack, *partial[1])).root()
                partial = next(partial_roots, None)
            sequence = deferred.sequence
            if helper.failure is not None and sequence >= helper.failure[0]:
                break
            h = deferred.hash
            nodes = []
            for k in range(1, deferred.merges + 1):
                h = node_hash(stack[-k], h)
                nodes.append(h)
            if b"".join(nodes) != deferred.stored:
                stack.extend(deferred.stack)
                self.expected = sequence
                self.previous = deferred.previous
                raise _Bad(
                    sequence, f"entry {self.log_id}#{sequence}: stored Merkle subtree hashes do not match the entries"
                )
            del stack[-deferred.merges :]
            stack.append(h)
        while partial is not None and (helper.failure is None or partial[0] <= helper.failure[0]):
            self.roots[partial[0]] = Frontier(partial[0], (*stack, *partial[1])).root()
            partial = next(partial_roots, None)
        stack.extend(helper.stack)
        if helper.expected != self.expected:  # else it verified nothing, and its previous hash is only a guess
            self.expected = helper.expected
            self.previous = helper.previous
        if helper.failure is not None:
            raise _Bad(*helper.failure)

    def row(self, row: Sequence[Any]) -> None:
        """The reference check of one raw row (AUDIT_COLUMNS), read as SqlStore.audit_rows would read it."""
        try:
            seq, kind, recorded_at, body, prev, entry_hash, subtrees, *index = row
            entry = Entry(
                self.log_id, int(seq), EntryKind(kind), int(recorded_at), _bytes(body), _bytes(prev), _bytes(entry_hash)
            )
            stored = IndexColumns(*index)
            nodes = _bytes(subtrees)
        except (ValueError, TypeError) as err:  # a stored row that cannot even be decoded (kind, numbers)
            raise _Bad(self.expected, f"entry {self.log_id}#{self.expected}: stored row is unreadable ({err})") from err
        try:
            self.entry(entry, stored, nodes)
        except (ValueError, TypeError) as err:
            raise _Bad(self.expected, f"entry {self.log_id}#{self.expected}: stored row is unreadable ({err})") from err

    def rows(self, rows: Sequence[Sequence[Any]]) -> None:
        """Check a page of raw rows (AUDIT_COLUMNS) in sequence order: the verification hot loop."""
        sha256 = hashlib.sha256
        scan = _SCAN
        framing = self._framing
        minutes = self._minutes
        seconds = _SECONDS
        expected = self.expected
        previous = self.previous
        stack = self.stack
        row: Sequence[Any] = ()
        remaining = iter(rows)
        while True:
            try:
                for row in remaining:
                    (
                        seq,
                        kind,
                        recorded_at,
                        body,
                        prev,
                        entry_hash,
                        subtrees,
                        org,
                        endpoint,
                        workload,
                        request,
                        at,
                        key,
                    ) = row
                    if seq != expected or prev != previous:
                        raise _Unusual
                    pack, kind_field = framing[kind]
                    encoded = pack(seq, kind_field, recorded_at, len(body)) + body
                    if sha256(previous + encoded).digest() != entry_hash:
                        raise _Unusual
                    # json.loads(body), less its encoding detection and wrappers: a body it would read differently
                    # (a BOM, UTF-16, white space around the object) fails one of these checks instead.
                    text = body.decode()
                    fields, end = scan(text, 0)
                    if end != len(text):
                        raise _Unusual
                    if kind == "EVENT":
                        if (
                            fields.get("org_id") != org
                            or fields.get("endpoint_id") != endpoint
                            or fields.get("workload_id") != workload
                            or fields.get("request_id") != request
                            or fields.get("event_id") != key
                        ):
                            raise _Unusual
                        when = fields.get("occurred_at")
                        if when is None:
                            if at is not None or "occurred_at" in fields:
                                raise _Unusual
                        else:
                            # Rather than parse the body's time, write the column's as the ledger does and compare.
                            if type(at) is not int:
                                raise _Unusual
                            minute, rest = divmod(at, 60_000_000)
                            prefix = minutes.get(minute) or self._minute(minute)
                            if when != prefix + seconds(*divmod(rest, 1_000_000)):
                                raise _Unusual
                    elif derive_index(EntryKind(kind), fields) != IndexColumns(
                        org, endpoint, workload, request, at, key
                    ):
                        raise _Unusual
                    h = sha256(b"\x00" + encoded).digest()
                    if seq & 1:
                        merges = (seq ^ (seq + 1)).bit_length() - 1
                        nodes = [h]
                        for k in range(1, merges + 1):
                            h = sha256(b"\x01" + stack[-k] + h).digest()
                            nodes.append(h)
                        if subtrees != b"".join(nodes):
                            raise _Unusual
                        del stack[-merges:]
                    elif subtrees != h:
                        raise _Unusual
                    stack.append(h)
                    previous = entry_hash
                    expected += 1
                break
            except _Bad:
                raise
            except Exception:  # whatever is odd about this row, the reference check decides
                self.expected = expected
                self.previous = previous
                self.row(row)
                expected = self.expected
                previous = self.previous
        self.expected = expected
        self.previous = previous


@dataclass(frozen=True)
class _Deferred:
    """A leaf whose subtrees reach left of a helper's start: checked up to `hash`, `merges` more to go."""

    sequence: int
    hash: bytes
    merges: int
    stored: bytes  # the stored subtree hashes still to check
    previous: bytes  # the chain and the helper's own frontier before this leaf, should it fail
    stack: list[bytes]


@dataclass(frozen=True)
class _HelperResult:
    """What a helper process found over its part of a log (see _LogCheck.join)."""

    first_previous: bytes | None  # the previous hash its first row stores, None if that row was not the one expected
    expected: int
    previous: bytes
    stack: list[bytes]
    deferred: list[_Deferred]
    partial_roots: list[tuple[int, list[bytes], int]]
    failure: tuple[int, str] | None


class _Helper:
    """A child process verifying [begin, stop) of a log while this one verifies [0, begin).

    A plain `python -c` child rather than multiprocessing: it needs no importable __main__ and no fork of a process
    that may run threads. Anything that goes wrong with it (it cannot start, open the database, or answer) only
    means this process verifies that part itself.
    """

    def __init__(self, process: subprocess.Popen[bytes], begin: int) -> None:
        self.process = process
        self.begin = begin

    @classmethod
    def start(
        cls, store: PagedAuditSource, log_id: str, begin: int, stop: int, roots_at: frozenset[int]
    ) -> _Helper | None:
        try:
            opener = store.audit_opener()
            if opener is None:
                return None
            request = pickle.dumps((opener, log_id, begin, stop, roots_at))
            code = (
                "import pickle, sys; sys.path[:0] = pickle.load(sys.stdin.buffer); "
                "import ledger.log.audit as audit; audit._helper_main()"
            )
            process = subprocess.Popen(
                [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
        except (OSError, pickle.PicklingError, AttributeError, TypeError):
            return None
        try:
            assert process.stdin is not None
            process.stdin.write(pickle.dumps(sys.path) + request)
            process.stdin.close()
        except OSError:
            process.kill()
            process.wait()
            return None
        return cls(process, begin)

    def result(self) -> _HelperResult | None:
        try:
            assert self.process.stdout is not None
            output = self.process.stdout.read()
            if self.process.wait() != 0:
                return None
            result = pickle.loads(output)
        except (OSError, pickle.UnpicklingError, EOFError, ValueError):
            return None
        return result if isinstance(result, _HelperResult) else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def _helper_main() -> None:
    """The helper process: verify the requested part of a log and write a pickled _HelperResult to stdout."""
    opener, log_id, begin, stop, roots_at = pickle.load(sys.stdin.buffer)
    source = opener()
    pages = source.audit_pages(log_id, begin, stop)
    first = next(pages, None)
    first_previous = None
    if first and first[0][0] == begin and isinstance(first[0][4], bytes):
        first_previous = first[0][4]
    check = _LogCheck(log_id, begin, first_previous if first_previous is not None else GENESIS_HASH, roots_at)
    failure = None
    try:
        for rows in itertools.chain((first,) if first else (), pages):
            check.page(rows)
    except _Bad as bad:
        failure = (bad.sequence, str(bad))
    except (ValueError, TypeError) as err:
        failure = (check.expected, f"entry {log_id}#{check.expected}: stored row is unreadable ({err})")
    assert check.deferred is not None
    result = _HelperResult(
        first_previous, check.expected, check.previous, check.stack, check.deferred, check.partial_roots, failure
    )
    sys.stdout.buffer.write(pickle.dumps(result))
    sys.stdout.flush()


# What json.loads runs, configured as json.loads' default decoder is.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_SECONDS = "{:02d}.{:06d}Z".format  # the rest of format_micros' text after the minute, from (second, micros)
_LAST_MINUTE = 253_402_300_800_000_000 // 60_000_000  # 10000-01-01T00:00Z


class _Unusual(Exception):
    """A row the hot loop does not accept as it is: the reference check decides what, if anything, is wrong."""


def _framing(log_prefix: bytes) -> dict[str, tuple[Callable[[int, bytes, int, int], bytes], bytes]]:
    """For each entry kind: a pack(sequence, kind field, recorded_at, body length) giving the entry bytes up to the
    body (ledger.entry.entry_bytes, docs/encoding.md) for one log, and the kind field to pass it."""
    framing: dict[str, tuple[Callable[[int, bytes, int, int], bytes], bytes]] = {}
    for kind in EntryKind:
        field = bytes((len(kind.value),)) + kind.value.encode()
        fmt = struct.Struct(f">{len(log_prefix)}sQ{len(field)}sqI")
        framing[kind.value] = (functools.partial(fmt.pack, log_prefix), field)
    return framing


def _bytes(value: Any) -> bytes:
    """Binary columns as bytes, even when a hand edit stored text there (audit must report it, not crash)."""
    return value.encode() if isinstance(value, str) else bytes(value)


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
