"""`ledgerctl audit`: verify the ledger (chains, index columns, Merkle trees, signed checkpoints), keys and proofs.

docs/audit.md describes every check and format, for auditors who write their own verifier.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol
from urllib.parse import quote

import grpc
import typer
from rich.table import Table
from usageledger.v1 import audit_pb2 as apb
from usageledger.v1 import audit_pb2_grpc as apb_grpc

from client.ledger_client import LedgerClient
from client.output import (
    DEFAULT_TARGET,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    JsonFlag,
    Target,
    emit_json,
    err_console,
    fail,
    out,
    progress_bar,
    rpc_failure,
)
from ledger.billing.rederive import InvoiceFinding, rederive_invoices
from ledger.errors import LedgerError, NotFound, VerificationError
from ledger.log.audit import AuditSource, LogVerification, PagedAuditSource, all_log_ids, verify_log
from ledger.log.entry import GENESIS_HASH, SYSTEM_LOG, Entry, EntryKind, LogHead, chain_hash, org_log_id, org_of_log
from ledger.log.merkle import EMPTY_ROOT, Frontier, consistency_proof, leaf_hash
from ledger.log.note import NoteVerifier, generate_signer_key, write_private_key_file
from ledger.log.proofs import (
    DEFAULT_LEDGER_NAME,
    LogNodes,
    ProofBundle,
    SignedCheckpoint,
    check_against_checkpoints,
    check_every_checkpoint,
    load_proof,
    origin_log_id,
)
from ledger.log.signing import StoredCheckpoint
from ledger.ports import IndexColumns
from ledger.timeutil import format_micros

if TYPE_CHECKING:
    from storage.sql.rollup_check import RollupCheck

audit_app = typer.Typer(
    help="Verify the ledger (hash chains, Merkle trees, signed checkpoints); keys and inclusion proofs.",
    no_args_is_help=True,
)

VerifierKeyOption = Annotated[
    str | None,
    typer.Option(
        "--verifier-key",
        envvar="LEDGER_VERIFIER_KEY",
        help="The ledger's verifier key (name+id+key, as `audit keygen` printed it) or a file holding it.",
    ),
]
LedgerNameOption = Annotated[
    str,
    typer.Option("--ledger-name", envvar="LEDGER_NAME", help="Checkpoint origins are LEDGER_NAME/LOG_ID."),
]


def default_state_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "usage-ledger" / "checkpoints"


def _log_id(org: str | None, log: str | None, as_json: bool) -> str:
    if (org is None) == (log is None):
        fail("give exactly one of --org ORG or --log LOG", EXIT_USAGE, as_json=as_json)
    return org_log_id(org) if org is not None else str(log)


def parse_verifier_key(value: str, as_json: bool) -> NoteVerifier:
    """A verifier key given inline or as a file."""
    text = value
    path = Path(value)
    if "+" not in value or path.is_file():
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            fail(
                f"--verifier-key: {value!r} is neither a verifier key nor a readable file ({err})",
                EXIT_USAGE,
                as_json=as_json,
            )
    try:
        return NoteVerifier(text)
    except VerificationError as err:
        fail(f"--verifier-key: {err}", EXIT_USAGE, as_json=as_json)


# -- where verification reads from -----------------------------------------------------------------------------------


class _CheckpointSource(AuditSource, Protocol):
    def stored_checkpoints(self, log_id: str) -> list[StoredCheckpoint]:
        """Every signed checkpoint of the log the source can show, smallest first (through the API: the newest)."""
        ...

    def consistency(self, log_id: str, old_size: int, new_size: int) -> list[bytes]: ...

    def invoiced_size(self, log_id: str) -> int | None: ...


class _RemoteLogs:
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
        from server.audit_service import leaf_from_proto

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
        from server.audit_service import checkpoint_from_proto

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


class _DatabaseLogs:
    """Audit the database directly: also checks index columns and stored Merkle nodes; checkpoints from its table."""

    def __init__(self, database_url: str) -> None:
        from storage.sql import open_store

        self.store = open_store(database_url)

    def head(self, log_id: str) -> LogHead:
        return self.store.head(log_id)

    def list_logs(self, after: str, limit: int) -> list[LogHead]:
        return self.store.list_logs(after, limit)

    def audit_rows(self, log_id: str, start: int = 0) -> Iterator[tuple[Entry, IndexColumns | None, bytes | None]]:
        yield from self.store.audit_rows(log_id, start)

    def audit_pages(self, log_id: str, start: int = 0, stop: int | None = None) -> Iterator[Sequence[Sequence[Any]]]:
        return self.store.audit_pages(log_id, start, stop)

    def audit_opener(self) -> Callable[[], PagedAuditSource] | None:
        return self.store.audit_opener()

    def stored_checkpoints(self, log_id: str) -> list[StoredCheckpoint]:
        return self.store.checkpoints(log_id, 2**63 - 1)  # the largest BIGINT: every row

    def consistency(self, log_id: str, old_size: int, new_size: int) -> list[bytes]:
        return consistency_proof(old_size, new_size, LogNodes(self.store, log_id))

    def invoiced_size(self, log_id: str) -> int | None:
        """Entries up to the log's last INVOICE entry (from ix_entries_kind): nothing after it bears on an invoice."""
        invoices = self.store.entries_of_kind(log_id, [EntryKind.INVOICE.value])
        return invoices[-1].sequence + 1 if invoices else 0

    def rollup_cursors(self) -> dict[str, tuple[int, int]] | None:
        """Each org log's rollup cursor: (entries applied, system log size), read before the logs are verified so
        that the verification notes their roots at those sizes."""
        from storage.sql.rollup_check import rollup_cursors_of

        return rollup_cursors_of(self.store)

    def close(self) -> None:
        self.store.close()


# -- the auditor's saved checkpoints ---------------------------------------------------------------------------------


def _state_file(state_dir: Path, origin: str) -> Path:
    return state_dir / (quote(origin, safe="") + ".checkpoint")


def _save_checkpoint(state_dir: Path, checkpoint: SignedCheckpoint) -> None:
    """Replace the saved checkpoint of a log atomically, so an interrupted run never leaves half a note."""
    state_dir.mkdir(parents=True, exist_ok=True)
    target = _state_file(state_dir, checkpoint.origin)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=state_dir, delete=False, suffix=".tmp") as f:
        f.write(checkpoint.note)
        temporary = Path(f.name)
    os.replace(temporary, target)


def _read_note(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# -- verify --------------------------------------------------------------------------------------------------------


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
    orgs: list[RollupCheck] = field(default_factory=list)
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


def _entries_verified(source: AuditSource, verification: LogVerification, stop: int) -> Iterator[Entry]:
    """A log's first `stop` entries read again, each checked to chain onto the one before, and their Merkle root
    checked against the one the verification rebuilt at that size: a re-derivation reads exactly the entries the
    chain check vouched for."""
    log_id = verification.log_id
    previous, frontier = GENESIS_HASH, Frontier.empty()
    if stop:
        for entry, _, _ in source.audit_rows(log_id):
            encoded = entry.encoded()
            if (
                entry.sequence != frontier.size
                or entry.previous_hash != previous
                or chain_hash(previous, encoded) != entry.entry_hash
            ):
                raise VerificationError(f"entry {log_id}#{frontier.size} changed after it was verified")
            yield entry
            previous = entry.entry_hash
            frontier = frontier.append(leaf_hash(encoded))[0]
            if frontier.size == stop:
                break
    if stop == verification.size:
        verified_root: bytes | None = verification.root_hash
    else:
        verified_root = EMPTY_ROOT if stop == 0 else verification.roots.get(stop)
    if frontier.size != stop or frontier.root() != verified_root:
        raise VerificationError(f"log {log_id} changed after it was verified (its first {stop} entries differ)")


def _count(n: int, noun: str) -> str:
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
            read_system: Iterable[Entry] = _entries_verified(source, verified_system, verified_system.size)
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
            findings = rederive_invoices(org_id, _entries_verified(source, log.verification, stop), system, seen)
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
        f"{_count(len(check.findings), 'invoice')} of {_count(len(orgs), 'org log')} re-derived from the raw "
        f"entries before each: {matched} match, {len(check.findings) - matched} differ"
    )
    return check


def check_rollups(
    source: _DatabaseLogs,
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
            return _entries_verified(source, log if wanted == log.log_id else system, stop)

        from storage.sql.rollup_check import check_org_rollups

        try:
            result = check_org_rollups(source.store, org_id, entries, cursor)
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
        f"{_count(len(check.orgs), 'org')}' rollups re-derived from the log: {_count(rows, 'stored row')}, "
        f"{_count(differing, 'difference')}" + "".join(f"; not checked: {why}" for why in skipped)
    )
    return check


def _audit_log(
    source: _CheckpointSource,
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
            saved_file = _state_file(state_dir, f"{ledger_name}/{log_id}")
            if saved_file.is_file():
                trusted_note = _read_note(saved_file)
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
        _save_checkpoint(state_dir, newest)
        audit.saved = True
    return audit


@audit_app.command("verify")
def audit_verify(
    org: Annotated[str | None, typer.Option("--org", help="Verify only this org's log.")] = None,
    all_logs: Annotated[bool, typer.Option("--all", help="Verify every log (the default).")] = False,
    verifier_key: VerifierKeyOption = None,
    trusted_checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--trusted-checkpoint",
            help="A signed checkpoint you trust (a file holding the note); the log must extend it. "
            "Takes the place of the saved one for its log.",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="Where the newest verified checkpoint of each log is saved, and checked against next time "
            "(default: ~/.config/usage-ledger/checkpoints).",
        ),
    ] = None,
    ledger_name: LedgerNameOption = DEFAULT_LEDGER_NAME,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="LEDGER_DATABASE_URL",
            help="Read the database directly (also checks index columns and stored Merkle nodes).",
        ),
    ] = None,
    skip_invoices: Annotated[
        bool,
        typer.Option(
            "--skip-invoices", help="Do not re-derive the invoices from the raw entries (chains and checkpoints only)."
        ),
    ] = False,
    skip_rollups: Annotated[
        bool,
        typer.Option(
            "--skip-rollups",
            help="Do not re-derive the usage rollups from the log and compare them (with --database-url).",
        ),
    ] = False,
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
) -> None:
    """Recompute every hash chain and Merkle root from the stored bytes, check them against the ledger's signed
    checkpoints and the one verified last time, and re-derive every invoice from the raw entries before it; exit 1
    naming the first bad entry or invoice."""
    if org and all_logs:
        fail("give --org ORG or --all, not both", EXIT_USAGE, as_json=as_json)
    verifier = parse_verifier_key(verifier_key, as_json) if verifier_key else None
    trusted_notes: dict[str, str] = {}
    if trusted_checkpoint is not None:
        if verifier is None:
            fail("--trusted-checkpoint needs --verifier-key to check its signature", EXIT_USAGE, as_json=as_json)
        try:
            note = _read_note(trusted_checkpoint)
            opened = SignedCheckpoint.open(_origin_log(note, ledger_name), note, verifier, ledger_name)
        except (OSError, UnicodeDecodeError, VerificationError) as err:
            fail(f"--trusted-checkpoint {trusted_checkpoint}: {err}", EXIT_USAGE, as_json=as_json)
        trusted_notes[opened.log_id] = note
    states = (state_dir or default_state_dir()) if verifier is not None else None

    source: _RemoteLogs | _DatabaseLogs
    client: LedgerClient | None = None
    if database_url:
        try:
            source = _DatabaseLogs(database_url)
        except LedgerError as err:
            fail(str(err), EXIT_USAGE, as_json=as_json)
    else:
        client = LedgerClient(target)
        source = _RemoteLogs(client)
    report = VerifyReport(checkpoints_checked=verifier is not None)
    try:
        # Read before any log is verified, so each verification notes its root where the rollups stand.
        cursors = None if skip_rollups else source.rollup_cursors()
        rollup_sizes: dict[str, set[int]] = {}
        for log_id, (applied, system_size) in (cursors or {}).items():
            rollup_sizes.setdefault(log_id, set()).add(applied)
            rollup_sizes.setdefault(SYSTEM_LOG, set()).add(system_size)
        log_ids = [org_log_id(org)] if org else list(all_log_ids(source))
        unknown = sorted(set(trusted_notes) - set(log_ids))
        if unknown:
            fail(
                f"--trusted-checkpoint is of log {unknown[0]}, which is not being verified", EXIT_USAGE, as_json=as_json
            )
        sizes: dict[str, int | None] = {}

        def entries_of(log_id: str) -> int | None:
            """The log's size when its verification starts: the bar's total, `9000/12004` rather than `9000/?`."""
            if log_id not in sizes:
                try:
                    sizes[log_id] = source.head(log_id).size
                except (NotFound, grpc.RpcError):
                    sizes[log_id] = None  # the verification itself reports a missing log or a failed call
            return sizes[log_id]

        with progress_bar(as_json) as progress:
            first = log_ids[0] if log_ids else None
            task = progress.add_task(f"verifying {first or ''}", total=entries_of(first) if first else 0)
            for log_id in log_ids:
                report.logs.append(
                    _audit_log(
                        source,
                        log_id,
                        verifier,
                        ledger_name,
                        trusted_notes.get(log_id),
                        states,
                        lambda lid, n: progress.update(
                            task, description=f"verifying {lid}", completed=n, total=entries_of(lid)
                        ),
                        rollup_sizes.get(log_id, ()),
                    )
                )
            if skip_invoices:
                report.invoices = InvoiceCheck(False, note="not re-derived (--skip-invoices)")
            else:
                report.invoices = check_invoices(
                    source,
                    report,
                    lambda lid, n: progress.update(
                        task, description=f"re-deriving invoices of {lid}", completed=n, total=entries_of(lid)
                    ),
                )
            if skip_rollups:
                report.rollups = RollupsCheck(False, note="not re-derived (--skip-rollups)")
            elif cursors is None or not isinstance(source, _DatabaseLogs):
                report.rollups = RollupsCheck(
                    False, note="not checked: the rollups are in the database (--database-url)"
                )
            else:
                report.rollups = check_rollups(
                    source,
                    report,
                    cursors,
                    lambda lid, n: progress.update(task, description=f"re-deriving rollups of {lid}", completed=n),
                )
    except grpc.RpcError as err:
        rpc_failure(err, target, as_json)
    finally:
        if client is not None:
            client.close()
        elif isinstance(source, _DatabaseLogs):
            source.close()
    _print_report(report, as_json)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_REFUSED)


def _origin_log(note: str, ledger_name: str) -> str:
    """The log a signed checkpoint note is of, read from its (not yet verified) origin line."""
    return origin_log_id(note.split("\n", 1)[0], ledger_name)


_INVOICE_ROWS = 50  # a longer list shows only the invoices that differ


def _print_report(report: VerifyReport, as_json: bool) -> None:
    bad = report.first_failure()
    if as_json:
        emit_json(
            {
                "ok": report.ok,
                "entries": report.entries,
                "checkpoints_checked": report.checkpoints_checked,
                "logs": [_log_json(log) for log in report.logs],
                "first_failure": _log_json(bad) if bad is not None else None,
                "invoices": {
                    "checked": report.invoices.checked,
                    "invoices": [
                        {
                            "org_id": f.org_id,
                            "number": f.number,
                            "sequence": f.sequence,
                            "total": f.total,
                            "ok": f.ok,
                            "differences": list(f.differences),
                            "note": f.note,
                        }
                        for f in report.invoices.findings
                    ],
                    "problems": report.invoices.problems,
                    "note": report.invoices.note,
                },
                "rollups": {
                    "checked": report.rollups.checked,
                    "orgs": [
                        {
                            "log_id": r.log_id,
                            "applied_size": r.applied_size,
                            "rows": r.rows,
                            "differences": [str(d) for d in r.differences],
                        }
                        for r in report.rollups.orgs
                    ],
                    "problems": report.rollups.problems,
                    "note": report.rollups.note,
                },
            }
        )
        return
    table = Table("log", "entries verified", "Merkle root", "signed checkpoint", "result")
    for log in report.logs:
        v = log.verification
        if not report.checkpoints_checked:
            signed = "not checked"
        elif log.checkpoint is None:
            signed = "none yet"
        else:
            signed = f"size {log.checkpoint.size}" + (f" (extends {log.trusted.size})" if log.trusted else "")
            if len(log.verified_sizes) > 1:
                signed += f", {len(log.verified_sizes)} notes checked"
        result = "[green]ok[/]" if log.ok else "[red]FAILED[/]"
        table.add_row(v.log_id, str(v.size), v.root_hash.hex()[:16] + "…", signed, result)
    out.print(table)
    if not report.checkpoints_checked:
        out.print("signed checkpoints not checked: pass --verifier-key to check them")
    findings = report.invoices.findings
    shown = findings if len(findings) <= _INVOICE_ROWS else [f for f in findings if not f.ok][:_INVOICE_ROWS]
    if shown:
        invoices = Table("org", "invoice", "entry", "total (USD)", "re-derived")
        for f in shown:
            result = (
                (f"[green]matches[/] ({f.note})" if f.note else "[green]matches[/]")
                if f.ok
                else (f"[red]differs:[/] {f.differences[0]}")
            )
            invoices.add_row(f.org_id, f"#{f.number}", str(f.sequence), f.total, result)
        out.print(invoices)
    if report.invoices.note:
        out.print(f"invoices: {report.invoices.note}")
    if report.rollups.note:
        out.print(f"rollups: {report.rollups.note}", markup=False, highlight=False)
    for problem in report.rollups.problems[:_INVOICE_ROWS]:
        err_console.print(f"[red]rollup differs:[/] {problem}", highlight=False)
    if bad is not None:
        err_console.print(f"[bold red]verification failed:[/] {bad.failure}")
    elif report.invoices.problems:
        err_console.print(f"[bold red]invoice re-derivation failed:[/] {report.invoices.problems[0]}")
    elif report.rollups.problems:
        err_console.print(
            f"[bold red]rollups differ from the log:[/] {_count(len(report.rollups.problems), 'difference')}; "
            "repair with `ledgerctl rollups rebuild --org ORG`"
        )
    else:
        out.print(f"[green]verified[/] {report.entries} entries in {len(report.logs)} logs")


def _log_json(log: LogAudit) -> dict[str, Any]:
    v = log.verification
    return {
        "log_id": v.log_id,
        "ok": log.ok,
        "entries_verified": v.size,
        "root_hash": v.root_hash.hex(),
        "head_hash": v.head_hash.hex(),
        "failure": log.failure,
        "failed_sequence": log.failed_sequence,
        "checkpoint": _checkpoint_json(log.checkpoint),
        "trusted_checkpoint": _checkpoint_json(log.trusted),
        "checkpoint_saved": log.saved,
        "checkpoints_verified": log.verified_sizes,
    }


def _checkpoint_json(checkpoint: SignedCheckpoint | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    return {"origin": checkpoint.origin, "size": checkpoint.size, "root_hash": checkpoint.root_hash.hex()}


# -- keys, checkpoints and proofs --------------------------------------------------------------------------------------


@audit_app.command("keygen")
def audit_keygen(
    name: Annotated[str, typer.Option("--name", help="Key name, conventionally the ledger name.")],
    out_file: Annotated[Path, typer.Option("--out", help="Private key file to create (mode 0600; never overwritten).")],
    as_json: JsonFlag = False,
) -> None:
    """Create a checkpoint signing key: the private key goes to --out, the verifier key is printed for auditors."""
    try:
        key = generate_signer_key(name)
        write_private_key_file(out_file, key)
    except FileExistsError:
        fail(f"{out_file} exists; refusing to overwrite a key (choose another --out)", EXIT_USAGE, as_json=as_json)
    except VerificationError as err:
        fail(f"--name: {err}", EXIT_USAGE, as_json=as_json)
    except OSError as err:
        fail(f"cannot create {out_file}: {err}", EXIT_USAGE, as_json=as_json)
    from ledger.log.note import NoteSigner

    verifier_key = NoteSigner(key).verifier_key
    if as_json:
        emit_json({"ok": True, "private_key_file": str(out_file), "verifier_key": verifier_key})
    else:
        err_console.print(
            f"private key written to {out_file} (mode 0600); start the server with --signing-key {out_file}"
        )
        err_console.print("verifier key (give it to auditors):")
        typer.echo(verifier_key)


def _audit_stub(client: LedgerClient) -> apb_grpc.AuditServiceStub:
    return apb_grpc.AuditServiceStub(client.channel)


@audit_app.command("checkpoint")
def audit_checkpoint(
    org: Annotated[str | None, typer.Option("--org", help="Org ID (its log is org/ORG).")] = None,
    log: Annotated[str | None, typer.Option("--log", help="A log ID such as `system`.")] = None,
    size: Annotated[int, typer.Option("--size", min=0, help="The checkpoint of this size (default: newest).")] = 0,
    sign: Annotated[bool, typer.Option("--sign", help="Ask the server to sign the log as it is now.")] = False,
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
) -> None:
    """Print a log's signed checkpoint note (save it to pass as --trusted-checkpoint later)."""
    from server.audit_service import checkpoint_from_proto

    log_id = _log_id(org, log, as_json)
    with LedgerClient(target) as client:
        stub = _audit_stub(client)
        try:
            if sign:
                message = client.call(stub.SignCheckpoint, apb.SignCheckpointRequest(log_id=log_id)).checkpoint
            else:
                request = apb.GetCheckpointRequest(log_id=log_id, size=size)
                message = client.call(stub.GetCheckpoint, request).checkpoint
        except grpc.RpcError as err:
            rpc_failure(err, target, as_json)
    checkpoint = checkpoint_from_proto(message)
    if as_json:
        emit_json(
            {
                **(_checkpoint_json(checkpoint) or {}),
                "log_id": log_id,
                "signed_note": checkpoint.note,
                "sign_time": format_micros(message.sign_time.seconds * 1_000_000 + message.sign_time.nanos // 1000),
            }
        )
    else:
        typer.echo(checkpoint.note, nl=False)


@audit_app.command("verifier-key")
def audit_verifier_key(target: Target = DEFAULT_TARGET, as_json: JsonFlag = False) -> None:
    """Print the verifier key a running server signs checkpoints with.

    Compare it with the key you were given out of band (the server printed it when it started) before pinning it:
    a key read from the server you are checking proves nothing on its own.
    """
    with LedgerClient(target) as client:
        try:
            response = client.call(_audit_stub(client).GetVerifierKey, apb.GetVerifierKeyRequest())
        except grpc.RpcError as err:
            rpc_failure(err, target, as_json)
    if as_json:
        emit_json({"verifier_key": response.verifier_key, "ledger_name": response.ledger_name})
    else:
        err_console.print(f"ledger {response.ledger_name} at {target} signs checkpoints with verifier key:")
        # The key alone on stdout, so `KEY=$(ledgerctl audit verifier-key)` captures exactly it.
        typer.echo(response.verifier_key)


@audit_app.command("prove")
def audit_prove(
    seq: Annotated[int, typer.Option("--seq", min=0, help="The entry's sequence number.")],
    org: Annotated[str | None, typer.Option("--org", help="Org ID (its log is org/ORG).")] = None,
    log: Annotated[str | None, typer.Option("--log", help="A log ID such as `system`.")] = None,
    tree_size: Annotated[
        int, typer.Option("--tree-size", min=0, help="Prove in this signed tree size (default: newest checkpoint).")
    ] = 0,
    sign: Annotated[
        bool, typer.Option("--sign/--no-sign", help="If no signed checkpoint covers the entry yet, ask for one.")
    ] = True,
    target: Target = DEFAULT_TARGET,
    as_json: Annotated[
        bool, typer.Option("--json", help="The proof is JSON either way; with --json, errors are JSON too.")
    ] = False,
) -> None:
    """Write an offline-checkable inclusion proof of one entry (proof.json, docs/audit.md) to standard output."""
    from server.audit_service import checkpoint_from_proto, leaf_from_proto

    log_id = _log_id(org, log, as_json)
    with LedgerClient(target) as client:
        stub = _audit_stub(client)
        try:
            request = apb.GetInclusionProofRequest(log_id=log_id, sequence=seq, tree_size=tree_size)
            response = client.call(stub.GetInclusionProof, request)
            if not response.HasField("checkpoint") and sign and not tree_size:
                signed = client.call(stub.SignCheckpoint, apb.SignCheckpointRequest(log_id=log_id)).checkpoint
                request = apb.GetInclusionProofRequest(log_id=log_id, sequence=seq, tree_size=signed.size)
                response = client.call(stub.GetInclusionProof, request)
        except grpc.RpcError as err:
            rpc_failure(err, target, as_json)
    if not response.HasField("checkpoint"):
        fail(
            f"no signed checkpoint of size {response.tree_size} covers {log_id}#{seq}"
            + ("" if sign else "; run without --no-sign to ask the server for one"),
            EXIT_REFUSED,
            as_json=as_json,
        )
    try:
        bundle = ProofBundle(
            checkpoint_from_proto(response.checkpoint),
            (leaf_from_proto(response.leaf),),
            tuple(response.proof_hashes),
        )
    except VerificationError as err:
        fail(f"the server's answer is malformed: {err}", EXIT_REFUSED, as_json=as_json)
    emit_json(bundle.to_json())


@audit_app.command("check-proof")
def audit_check_proof(
    proof_file: Annotated[
        Path, typer.Argument(metavar="PROOF_FILE", help="A proof.json written by `ledgerctl audit prove`.")
    ],
    verifier_key: VerifierKeyOption = None,
    ledger_name: LedgerNameOption = DEFAULT_LEDGER_NAME,
    as_json: JsonFlag = False,
) -> None:
    """Check a proof offline (no database, no server): entry bytes, inclusion in the checkpoint, its signature."""
    if not verifier_key:
        fail("--verifier-key is required: the proof is only as good as the key you trust", EXIT_USAGE, as_json=as_json)
    verifier = parse_verifier_key(verifier_key, as_json)
    try:
        text = proof_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        fail(f"cannot read {proof_file}: {err}", EXIT_USAGE, as_json=as_json)
    try:
        bundle = load_proof(text)
        checkpoint = bundle.verify(verifier, ledger_name)
    except VerificationError as err:
        fail(f"{proof_file}: proof does NOT verify: {err}", EXIT_REFUSED, as_json=as_json)
    entries = [_proven_json(e) for e in bundle.entries]
    if as_json:
        emit_json(
            {
                "ok": True,
                "origin": checkpoint.origin,
                "tree_size": checkpoint.size,
                "root_hash": checkpoint.root_hash.hex(),
                "verifier_key": verifier.verifier_key,
                "entries": entries,
            }
        )
        return
    for item in entries:
        out.print(
            f"[green]verified[/]: entry {item['log_id']}#{item['sequence']} ({item['kind']}, recorded "
            f"{item['recorded_at']}) is in {checkpoint.origin} at tree size {checkpoint.size}, "
            f"signed by {verifier.name}"
        )
        out.print(f"  body: {item['body']}", markup=False, highlight=False)


def _proven_json(entry: Entry) -> dict[str, Any]:
    body: Any
    try:
        body = json.loads(entry.body)
    except ValueError:
        body = entry.body.decode("utf-8", errors="replace")
    return {
        "log_id": entry.log_id,
        "sequence": entry.sequence,
        "kind": entry.kind.value,
        "recorded_at": format_micros(entry.recorded_at),
        "entry_hash": entry.entry_hash.hex(),
        "body": body,
    }
