"""`ledgerctl audit`: verify the ledger (chains, index columns, Merkle trees, signed checkpoints), keys and proofs.

docs/audit.md describes every check and format, for auditors who write their own verifier.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import grpc
import typer
from rich.table import Table
from usageledger.v1 import audit_pb2 as apb
from usageledger.v1 import audit_pb2_grpc as apb_grpc

from client.auditor import (
    DatabaseLogs,
    InvoiceCheck,
    LogAudit,
    RemoteLogs,
    RollupsCheck,
    VerifyReport,
    audit_log,
    check_invoices,
    check_rollups,
    counted,
    read_note,
)
from client.database import database_access
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
from ledger.errors import LedgerError, NotFound, VerificationError
from ledger.log.audit import all_log_ids
from ledger.log.entry import SYSTEM_LOG, Entry, org_log_id
from ledger.log.note import NoteVerifier, generate_signer_key, write_private_key_file
from ledger.log.proofs import (
    DEFAULT_LEDGER_NAME,
    ProofBundle,
    SignedCheckpoint,
    load_proof,
    origin_log_id,
)
from ledger.timeutil import format_micros

if TYPE_CHECKING:
    pass

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


# -- verify (the auditor itself: client/auditor.py) ------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(
    context: typer.Context,
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
            note = read_note(trusted_checkpoint)
            opened = SignedCheckpoint.open(_origin_log(note, ledger_name), note, verifier, ledger_name)
        except (OSError, UnicodeDecodeError, VerificationError) as err:
            fail(f"--trusted-checkpoint {trusted_checkpoint}: {err}", EXIT_USAGE, as_json=as_json)
        trusted_notes[opened.log_id] = note
    states = (state_dir or default_state_dir()) if verifier is not None else None

    source: RemoteLogs | DatabaseLogs
    direct: DatabaseLogs | None = None  # the database itself (--database-url): it also holds the rollups
    client: LedgerClient | None = None
    if database_url:
        try:
            source = direct = database_access(context, as_json).audit_source(database_url)
        except LedgerError as err:
            fail(str(err), EXIT_USAGE, as_json=as_json)
    else:
        client = LedgerClient(target)
        source = RemoteLogs(client)
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
                    audit_log(
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
            elif cursors is None or direct is None:
                report.rollups = RollupsCheck(
                    False, note="not checked: the rollups are in the database (--database-url)"
                )
            else:
                report.rollups = check_rollups(
                    direct,
                    report,
                    cursors,
                    lambda lid, n: progress.update(task, description=f"re-deriving rollups of {lid}", completed=n),
                )
    except grpc.RpcError as err:
        rpc_failure(err, target, as_json)
    finally:
        if client is not None:
            client.close()
        elif direct is not None:
            direct.close()
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
            f"[bold red]rollups differ from the log:[/] {counted(len(report.rollups.problems), 'difference')}; "
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
    from wire.checkpoints import checkpoint_from_proto

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
    from wire.checkpoints import checkpoint_from_proto, leaf_from_proto

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
