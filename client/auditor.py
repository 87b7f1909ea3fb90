"""The auditor behind `ledgerctl audit verify`: where it reads a ledger from (the API or the database), and each
log's checks against its signed checkpoints, invoices and rollups. The checks themselves are the core's
(ledger.log.replay, ledger.log.audit, ledger.log.proofs); this part fetches, orders and reports them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import grpc
from usageledger.v1 import audit_pb2 as apb
from usageledger.v1 import audit_pb2_grpc as apb_grpc

from client.ledger_client import LedgerClient
from ledger.billing.rederive import InvoiceFinding, rederive_invoices
from ledger.errors import NotFound, VerificationError
from ledger.log.audit import AuditSource, LogVerification, PagedAuditSource, verify_log
from ledger.log.entry import SYSTEM_LOG, Entry, EntryKind, LogHead, org_of_log
from ledger.log.merkle import EMPTY_ROOT
from ledger.log.note import NoteVerifier
from ledger.log.proofs import (
    SignedCheckpoint,
    check_against_checkpoints,
    check_every_checkpoint,
)
from ledger.log.replay import Replay, ReplayError
from ledger.log.signing import StoredCheckpoint
from ledger.ports import IndexColumns


class CheckpointSource(AuditSource, Protocol):
    def stored_checkpoints(self, log_id: str) -> list[StoredCheckpoint]:
        """Every signed checkpoint of the log the source can show, smallest first (through the API: the newest)."""
        ...

    def consistency(self, log_id: str, old_size: int, new_size: int) -> list[bytes]: ...

    def invoiced_size(self, log_id: str) -> int | None: ...


class RemoteLogs:
    """Audit through the API: leaves as their exact bytes (ListLeaves), checkpoints and consistency proofs from
    AuditService. Index columns and stored Merkle nodes are not exposed, so those two checks need --database-url."""

    def __init__(self, client: LedgerClient) -> None:
        self.client = client
        self.stub = apb_grpc.AuditServiceStub(client.channel)

    def head(self, log_id: str) -> LogHead:
        try:
            return self.client.head(log_id)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(err.details()) from err
            raise

    def list_logs(self, after: str, limit: int) -> list[LogHead]:
        return [h for h in self.client.logs() if h.log_id > after][:limit]

    def audit_rows(self, log_id: str, start: int = 0) -> Iterator[tuple[Entry, IndexColumns | None, bytes | None]]:
        from wire.checkpoints import leaf_from_proto

        token = ""
        while True:
            request = apb.ListLeavesRequest(log_id=log_id, page_size=1000, page_token=token, start_index=start)
            response = self.client.call(self.stub.ListLeaves, request)
            for leaf in response.leaves:
                try:
                    entry = leaf_from_proto(leaf)
                except VerificationError as err:
                    # Not decodable: the stored row itself is damaged. verify_log reports it at this sequence.
                    raise ValueError(str(err)) from err
                yield entry, None, None
            token = response.next_page_token
            if not token:
                return

    def stored_checkpoints(self, log_id: str) -> list[StoredCheckpoint]:
        """Every checkpoint the server lists (ListCheckpoints), as rows whose columns are their notes' own text."""
        from wire.checkpoints import checkpoint_from_proto

        found: list[StoredCheckpoint] = []
        token = ""
        while True:
            request = apb.ListCheckpointsRequest(log_id=log_id, page_size=1000, page_token=token)
            try:
                response = self.client.call(self.stub.ListCheckpoints, request)
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.NOT_FOUND:
                    return []
                raise
            for message in response.checkpoints:
                served = checkpoint_from_proto(message)
                found.append(StoredCheckpoint(log_id, served.size, served.root_hash, served.note, 0))
            token = response.next_page_token
            if not token:
                return found

    def consistency(self, log_id: str, old_size: int, new_size: int) -> list[bytes]:
        request = apb.GetConsistencyProofRequest(log_id=log_id, old_size=old_size, new_size=new_size)
        return list(self.client.call(self.stub.GetConsistencyProof, request).proof_hashes)

    def invoiced_size(self, log_id: str) -> int | None:
        """The API has no index of entry kinds: re-deriving the invoices reads the whole log."""
        return None

    def rollup_cursors(self) -> dict[str, tuple[int, int]] | None:
        """The API serves no derived tables: they are checked with --database-url."""
        return None


class RollupComparison(Protocol):
    """One org log's stored rollups against the rollups its verified entries give (storage/sql/rollup_check.py)."""

    @property
    def log_id(self) -> str: ...

    @property
    def applied_size(self) -> int | None: ...

    @property
    def rows(self) -> int: ...

    @property
    def differences(self) -> Sequence[object]: ...

    @property
    def skipped(self) -> str | None: ...


class DatabaseLogs(CheckpointSource, PagedAuditSource, Protocol):
    """Audit the database directly (`--database-url`, client/database.py): index columns and stored Merkle nodes
    are checked too, checkpoints come from their table, and the usage rollups can be re-derived."""

    def rollup_cursors(self) -> dict[str, tuple[int, int]] | None:
        """Each org log's rollup cursor: (entries applied, system log size), read before the logs are verified so
        that the verification notes their roots at those sizes."""
        ...

    def check_rollups(
        self,
        org_id: str,
        verified: Callable[[str, int], Iterable[Entry]],
        cursor_seen: tuple[int, int] | None,
    ) -> RollupComparison:
        """Re-derive the org's rollups from `verified(log_id, size)` and compare them with the stored rows."""
        ...

    def close(self) -> None: ...


def state_file(state_dir: Path, origin: str) -> Path:
    return state_dir / (quote(origin, safe="") + ".checkpoint")


def save_checkpoint(state_dir: Path, checkpoint: SignedCheckpoint) -> None:
    """Replace the saved checkpoint of a log atomically, so an interrupted run never leaves half a note."""
    state_dir.mkdir(parents=True, exist_ok=True)
    target = state_file(state_dir, checkpoint.origin)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=state_dir, delete=False, suffix=".tmp") as f:
        f.write(checkpoint.note)
        temporary = Path(f.name)
    os.replace(temporary, target)


def read_note(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@dataclass
class LogAudit:
    """One log's outcome: its chain/tree verification, and what was checked against signed checkpoints."""

    verification: LogVerification
    checkpoint: SignedCheckpoint | None = None
    trusted: SignedCheckpoint | None = None
    checkpoint_failure: str | None = None
    saved: bool = False
    # Entries up to and including the log's last INVOICE entry, where the source can tell (None: read it all).
    invoiced_size: int | None = None
    # Sizes of the signed checkpoints checked against the entries and each other (check_every_checkpoint).
    verified_sizes: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verification.ok and self.checkpoint_failure is None

    @property
    def failure(self) -> str | None:
        return self.verification.failure or self.checkpoint_failure

    @property
    def failed_sequence(self) -> int | None:
        """The first bad entry: from the chain check, or the first missing one of a truncated log."""
        if self.verification.failure is not None:
            return self.verification.failed_sequence
        if self.checkpoint_failure is None:
            return None
        signed = max((cp.size for cp in (self.checkpoint, self.trusted) if cp is not None), default=0)
        return self.verification.size if signed > self.verification.size else None


@dataclass
class InvoiceCheck:
    """What re-deriving the invoices found (ledger.billing.rederive): `checked` is False when it did not run."""

    checked: bool
    findings: list[InvoiceFinding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class RollupsCheck:
    """What re-deriving the usage rollups found (storage.sql.rollup_check): `checked` is False when it did not
    run. `problems` are every difference, each naming the table, the row and the figures."""

    checked: bool
    orgs: list[RollupComparison] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class VerifyReport:
    logs: list[LogAudit] = field(default_factory=list)
    checkpoints_checked: bool = False
    invoices: InvoiceCheck = field(default_factory=lambda: InvoiceCheck(False))
    rollups: RollupsCheck = field(default_factory=lambda: RollupsCheck(False))

    @property
    def ok(self) -> bool:
        return all(log.ok for log in self.logs) and not self.invoices.problems and not self.rollups.problems

    @property
    def entries(self) -> int:
        return sum(log.verification.size for log in self.logs)

    def first_failure(self) -> LogAudit | None:
        return next((log for log in self.logs if not log.ok), None)


def entries_verified(source: AuditSource, verification: LogVerification, stop: int) -> Iterator[Entry]:
    """A log's first `stop` entries read again, each checked to chain onto the one before, and their Merkle root
    checked against the one the verification rebuilt at that size: a re-derivation reads exactly the entries the
    chain check vouched for."""
    log_id = verification.log_id
    replay = Replay(log_id, bodies=False)
    if stop:
        for entry, _, _ in source.audit_rows(log_id):
            try:
                replay.entry(entry)
            except ReplayError as err:
                raise VerificationError(f"entry {log_id}#{replay.expected} changed after it was verified") from err
            yield entry
            if replay.expected == stop:
                break
    if stop == verification.size:
        verified_root: bytes | None = verification.root_hash
    else:
        verified_root = EMPTY_ROOT if stop == 0 else verification.roots.get(stop)
    if replay.expected != stop or replay.root() != verified_root:
        raise VerificationError(f"log {log_id} changed after it was verified (its first {stop} entries differ)")


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def check_invoices(
    source: AuditSource, report: VerifyReport, progress: Callable[[str, int], None] = lambda _log, _n: None
) -> InvoiceCheck:
    """Re-derive every invoice of each verified org log from its raw entries and compare it, figure by figure,
    with the INVOICE entry (ledger.billing.rederive). Logs that failed verification are not re-derived."""
    orgs = [
        (log, org_id)
        for log in report.logs
        if log.verification.ok and (org_id := org_of_log(log.verification.log_id)) is not None
    ]
    # The price books (R11, R12) from the system log: its verified entries when this run verified it.
    verified_system = next((log.verification for log in report.logs if log.verification.log_id == SYSTEM_LOG), None)
    try:
        if verified_system is not None and verified_system.ok:
            read_system: Iterable[Entry] = entries_verified(source, verified_system, verified_system.size)
        else:
            read_system = (entry for entry, _, _ in source.audit_rows(SYSTEM_LOG))
        system = [entry for entry in read_system if entry.kind is EntryKind.PRICE_BOOK]
    except NotFound:
        system = []
    except VerificationError as err:
        return InvoiceCheck(True, problems=[str(err)], note="the system log changed while it was audited")
    check = InvoiceCheck(True)
    for log, org_id in orgs:
        log_id = log.verification.log_id
        read = 0

        def seen(_: Entry, log_id: str = log_id) -> None:
            nonlocal read
            read += 1
            if read % 5000 == 0:
                progress(log_id, read)

        try:
            stop = log.verification.size if log.invoiced_size is None else log.invoiced_size
            findings = rederive_invoices(org_id, entries_verified(source, log.verification, stop), system, seen)
        except VerificationError as err:
            check.problems.append(str(err))
            continue
        check.findings += findings
        check.problems += [
            f"invoice #{f.number} of org {f.org_id} (entry {log_id}#{f.sequence}) does not re-derive from the log: "
            + "; ".join(f.differences)
            for f in findings
            if not f.ok
        ]
    matched = sum(f.ok for f in check.findings)
    check.note = (
        f"{counted(len(check.findings), 'invoice')} of {counted(len(orgs), 'org log')} re-derived from the raw "
        f"entries before each: {matched} match, {len(check.findings) - matched} differ"
    )
    return check


def check_rollups(
    source: DatabaseLogs,
    report: VerifyReport,
    cursors: dict[str, tuple[int, int]],
    progress: Callable[[str, int], None] = lambda _log, _n: None,
) -> RollupsCheck:
    """Re-derive the usage rollups of each verified org log from its verified entries (and the system log's) and
    name every stored row that differs (storage.sql.rollup_check); the repair is `ledgerctl rollups rebuild`."""
    verified = {log.verification.log_id: log.verification for log in report.logs}
    system = verified.get(SYSTEM_LOG)
    check = RollupsCheck(True)
    skipped: list[str] = []
    for log_id, cursor in sorted(cursors.items()):
        org_id = org_of_log(log_id)
        verification = verified.get(log_id)
        if org_id is None or verification is None or not verification.ok:
            continue  # not audited this run, or its own failure is reported already
        applied, system_size = cursor
        if system is None or not system.ok:
            # The rollups are rated with the system log's price books: only verified ones may stand behind them.
            skipped.append(f"{log_id}: the system log was not verified in this run (verify every log)")
            continue
        if system_size > system.size or applied > verification.size:
            head = source.head(log_id).size
            if applied > head:
                check.problems.append(
                    f"rollups of {log_id}: the cursor says {applied} entries were applied, but the log has {head} "
                    "(cursor altered); repair: ledgerctl rollups rebuild --org " + org_id
                )
            else:
                skipped.append(f"{log_id}: the log grew past what was verified while it was audited; run again")
            continue
        progress(log_id, applied)

        def entries(
            wanted: str, stop: int, log: LogVerification = verification, system: LogVerification = system
        ) -> Iterable[Entry]:
            return entries_verified(source, log if wanted == log.log_id else system, stop)

        try:
            result = source.check_rollups(org_id, entries, cursor)
        except VerificationError as err:
            check.problems.append(f"rollups of {log_id}: {err}")
            continue
        if result.skipped is not None:
            skipped.append(f"{log_id}: {result.skipped}")
            continue
        check.orgs.append(result)
        check.problems += [
            f"rollups of {log_id} differ from the log: {difference} (repair: ledgerctl rollups rebuild --org {org_id})"
            for difference in result.differences
        ]
    rows = sum(result.rows for result in check.orgs)
    differing = sum(len(result.differences) for result in check.orgs)
    check.note = (
        f"{counted(len(check.orgs), 'org')}' rollups re-derived from the log: {counted(rows, 'stored row')}, "
        f"{counted(differing, 'difference')}" + "".join(f"; not checked: {why}" for why in skipped)
    )
    return check


def audit_log(
    source: CheckpointSource,
    log_id: str,
    verifier: NoteVerifier | None,
    ledger_name: str,
    trusted_note: str | None,
    state_dir: Path | None,
    progress: Callable[[str, int], None],
    rollup_sizes: Collection[int] = (),
) -> LogAudit:
    """`rollup_sizes`: sizes the rollups reflect (their cursors), where the root is noted for check_rollups."""
    signed: list[SignedCheckpoint] = []
    newest: SignedCheckpoint | None = None
    trusted: SignedCheckpoint | None = None
    failure: str | None = None
    if verifier is not None:
        # Every stored checkpoint, not only the newest: a log rewritten and signed again has a valid newest note
        # while the older ones contradict it. They are read before the entries, so the entries read cover them
        # even while the log grows. Each row's size and root must be its signed note's (StoredCheckpoint.opened).
        stored = source.stored_checkpoints(log_id)
        for number, row in enumerate(stored, 1):
            which = "newest checkpoint" if number == len(stored) else f"checkpoint of size {row.size}"
            try:
                signed.append(row.opened(verifier, ledger_name))
            except VerificationError as err:
                failure = f"log {log_id}: the ledger's {which} does not verify: {err}"
                break
        else:
            newest = signed[-1] if signed else None
        if trusted_note is None and state_dir is not None:
            saved_file = state_file(state_dir, f"{ledger_name}/{log_id}")
            if saved_file.is_file():
                trusted_note = read_note(saved_file)
        if trusted_note is not None:
            try:
                trusted = SignedCheckpoint.open(log_id, trusted_note, verifier, ledger_name)
            except VerificationError as err:
                failure = failure or f"log {log_id}: the checkpoint verified earlier no longer verifies: {err}"
    sizes = {cp.size for cp in (*signed, trusted) if cp is not None}
    invoiced = None if org_of_log(log_id) is None else source.invoiced_size(log_id)
    try:
        # Checkpoints are checked against roots rebuilt from the entries in the same single pass; the root at the
        # last invoice vouches for the entries the invoices are re-derived from (check_invoices).
        roots_at = sizes | ({invoiced} if invoiced else set()) | set(rollup_sizes)
        verification = verify_log(source, log_id, progress, roots_at=roots_at)
    except NotFound:
        verification = LogVerification(log_id, 0, b"", b"", f"log {log_id} does not exist", None)
    roots = {0: EMPTY_ROOT, **verification.roots} if 0 in sizes else verification.roots
    audit = LogAudit(verification, newest, trusted, failure, invoiced_size=invoiced)
    if verifier is None or not verification.ok or failure is not None:
        return audit
    try:
        check_every_checkpoint(
            log_id, verification.size, roots, signed, lambda old, new: source.consistency(log_id, old, new)
        )
        audit.verified_sizes = [cp.size for cp in signed]
        check_against_checkpoints(
            log_id,
            verification.size,
            roots,
            newest,
            trusted,
            lambda old, new: source.consistency(log_id, old, new),
        )
    except VerificationError as err:
        audit.checkpoint_failure = str(err)
        return audit
    if state_dir is not None and newest is not None:
        save_checkpoint(state_dir, newest)
        audit.saved = True
    return audit
