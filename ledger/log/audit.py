"""Audit verification: replay every log from its stored bytes alone (ledger.log.replay), in two processes when long."""

from __future__ import annotations

import itertools
import pickle
import subprocess
import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ledger.errors import NotFound, VerificationError
from ledger.log.entry import GENESIS_HASH, Entry, LogHead
from ledger.log.replay import HelperResult, Replay, ReplayError
from ledger.ports import IndexColumns

Progress = Callable[[str, int], None]  # (log id, entries verified so far in that log)


class AuditSource(Protocol):
    """What verification reads: the store itself, or the API (which exposes no index columns or stored nodes)."""

    def head(self, log_id: str) -> LogHead: ...

    def list_logs(self, after: str, limit: int) -> list[LogHead]: ...

    def audit_rows(self, log_id: str, start: int = 0) -> Iterator[tuple[Entry, IndexColumns | None, bytes | None]]: ...


@runtime_checkable
class PagedAuditSource(AuditSource, Protocol):
    """A source that can also hand over raw rows a page at a time (the SQL store): verification then builds no
    Entry or IndexColumns per row, which costs more than the hashing itself."""

    def audit_pages(self, log_id: str, start: int = 0, stop: int | None = None) -> Iterator[Sequence[Sequence[Any]]]:
        """Raw rows (ledger.log.replay.RAW_ROW) in [start, stop) in sequence order, a few thousand at a time."""
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
    check = Replay(log_id, roots_at=frozenset(roots_at))
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
                check.add(entry, stored_index, subtrees)
                if progress is not None and check.expected % 1000 == 0:
                    progress(log_id, check.expected)
        check.head(head)
    except (ReplayError, ValueError, TypeError) as err:  # or a row the source itself could not decode
        bad = err if isinstance(err, ReplayError) else check.unreadable(err)
        root = check.root()
        return LogVerification(log_id, check.expected, root, check.previous, str(bad), bad.sequence, check.roots)
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

    def result(self) -> HelperResult | None:
        try:
            assert self.process.stdout is not None
            output = self.process.stdout.read()
            if self.process.wait() != 0:
                return None
            result = pickle.loads(output)
        except (OSError, pickle.UnpicklingError, EOFError, ValueError):
            return None
        return result if isinstance(result, HelperResult) else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def _helper_main() -> None:
    """The helper process: verify the requested part of a log and write a pickled HelperResult to stdout."""
    opener, log_id, begin, stop, roots_at = pickle.load(sys.stdin.buffer)
    source = opener()
    pages = source.audit_pages(log_id, begin, stop)
    first = next(pages, None)
    first_previous = None
    if first and first[0][0] == begin and isinstance(first[0][4], bytes):
        first_previous = first[0][4]
    check = Replay(log_id, begin, first_previous if first_previous is not None else GENESIS_HASH, roots_at)
    failure = None
    try:
        for rows in itertools.chain((first,) if first else (), pages):
            check.page(rows)
    except (ReplayError, ValueError, TypeError) as err:
        bad = err if isinstance(err, ReplayError) else check.unreadable(err)
        failure = (bad.sequence, str(bad))
    assert check.deferred is not None
    result = HelperResult(
        first_previous, check.expected, check.previous, check.stack, check.deferred, check.partial_roots, failure
    )
    sys.stdout.buffer.write(pickle.dumps(result))
    sys.stdout.flush()


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
