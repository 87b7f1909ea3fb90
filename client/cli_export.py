"""`ledgerctl export` / `ledgerctl import`: move whole logs between databases as JSON Lines, every hash re-checked."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer

from client.cli_audit import LedgerNameOption, VerifierKeyOption, parse_verifier_key
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
    fail,
    out,
    quiet_stdout,
    rpc_failure,
)
from ledger.errors import LedgerError, NotFound, VerificationError
from ledger.log.audit import all_log_ids
from ledger.log.entry import Entry, LogHead, org_log_id
from ledger.log.proofs import DEFAULT_LEDGER_NAME
from ledger.log.signing import StoredCheckpoint

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="LEDGER_DATABASE_URL",
        help="SQLAlchemy URL of the ledger database (sqlite:///FILE or postgresql+psycopg://USER@HOST/DB).",
    ),
]


class _ApiLogs:
    """Export through the API when no database URL is given: the served entries carry every exported field."""

    def __init__(self, client: LedgerClient) -> None:
        self.client = client

    def head(self, log_id: str) -> LogHead:
        try:
            return self.client.head(log_id)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(err.details()) from err
            raise

    def list_logs(self, after: str, limit: int) -> list[LogHead]:
        return [h for h in self.client.logs() if h.log_id > after][:limit]

    def iter_entries(self, log_id: str, start: int = 0, stop: int | None = None) -> Iterator[Entry]:
        for entry in self.client.entries(log_id, start):
            if stop is not None and entry.sequence >= stop:
                return
            yield entry

    def checkpoints(self, log_id: str, max_size: int) -> list[StoredCheckpoint]:
        """The API serves a checkpoint by size, not a list: the newest one, when it lies within the export, or
        else the one of exactly the exported size, if the ledger signed one."""
        from usageledger.v1 import audit_pb2 as apb
        from usageledger.v1 import audit_pb2_grpc as apb_grpc

        stub = apb_grpc.AuditServiceStub(self.client.channel)
        for size in (0, max_size):
            try:
                served = self.client.call(stub.GetCheckpoint, apb.GetCheckpointRequest(log_id=log_id, size=size))
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    return []  # a ledger without a signing key serves no checkpoints
                if err.code() == grpc.StatusCode.NOT_FOUND:
                    continue
                raise
            checkpoint = served.checkpoint
            if checkpoint.size <= max_size:
                signed_at = checkpoint.sign_time.seconds * 1_000_000 + checkpoint.sign_time.nanos // 1000
                return [
                    StoredCheckpoint(log_id, checkpoint.size, checkpoint.root_hash, checkpoint.signed_note, signed_at)
                ]
        return []


def export_command(
    context: typer.Context,
    org: Annotated[list[str] | None, typer.Option("--org", help="Export this org's log (repeatable).")] = None,
    log: Annotated[
        list[str] | None, typer.Option("--log", help="Export this log, e.g. `system` for price books (repeatable).")
    ] = None,
    all_logs: Annotated[bool, typer.Option("--all", help="Export every log.")] = False,
    database_url: DatabaseUrl = None,
    target: Target = DEFAULT_TARGET,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of standard output.")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="The export is JSON Lines either way; with --json, errors and the summary are JSON too."
        ),
    ] = False,
) -> None:
    """Write logs as JSON Lines: a header, then every entry with all its stored fields and hashes.

    Reads the database with --database-url, otherwise the server at --target. Each log is exported up to its
    head when the export began; every chain link is checked on the way out.
    """
    log_ids = [org_log_id(o) for o in org or []] + list(log or [])
    if all_logs == bool(log_ids):
        fail("give --org ORG and/or --log LOG, or --all", EXIT_USAGE, as_json=as_json)
    with ExitStack() as stack:
        source: Any
        if database_url:
            try:
                source = database_access(context, as_json).open_ledger(database_url)
            except LedgerError as err:
                fail(str(err), EXIT_USAGE, as_json=as_json)
            stack.callback(source.close)
        else:
            source = _ApiLogs(stack.enter_context(LedgerClient(target)))
        try:
            if all_logs:
                log_ids = list(all_log_ids(source))
            _write(source, log_ids, output)
        except grpc.RpcError as err:
            rpc_failure(err, target, as_json)
        except BrokenPipeError:
            quiet_stdout()  # `ledgerctl export --all | head`: the reader has what it wanted (docs/cli.md)
            raise SystemExit(EXIT_OK) from None
        except OSError as err:
            fail(f"cannot write {output or 'standard output'}: {err}", EXIT_USAGE, as_json=as_json)
        except LedgerError as err:
            # NotFound (no such log) and VerificationError (a damaged store) alike: the ledger said no.
            fail(str(err), EXIT_REFUSED, as_json=as_json)
    if as_json and output is not None:
        emit_json({"ok": True, "logs": log_ids, "output": str(output)})


def _write(source: Any, log_ids: list[str], output: Path | None) -> None:
    """Stream the export; a file is written beside its name and renamed at the end, so a failed export never
    leaves a plausible-looking partial file behind."""
    from ledger.export import export_lines

    if output is None:
        for line in export_lines(source, log_ids):
            sys.stdout.buffer.write(line.encode("utf-8") + b"\n")
        sys.stdout.buffer.flush()
        return
    partial = output.with_name(output.name + ".partial")
    try:
        with partial.open("wb") as sink:
            for line in export_lines(source, log_ids):
                sink.write(line.encode("utf-8") + b"\n")
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)


def import_command(
    context: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A file written by `ledgerctl export`.")],
    database_url: DatabaseUrl = None,
    verifier_key: VerifierKeyOption = None,
    ledger_name: LedgerNameOption = DEFAULT_LEDGER_NAME,
    as_json: JsonFlag = False,
) -> None:
    """Verify FILE's every hash, chain link, Merkle root and checkpoint, then insert it with the same hashes.

    Each signed checkpoint the file carries must match the root of its log's entries at its size (with
    --verifier-key, its signature is checked too); the checkpoints are stored beside the entries. Nothing is
    written unless the whole file checks out; a bad file is refused naming its first bad line. The target must not
    hold any of the file's logs yet (import creates logs, it never merges into one).
    """
    if not database_url:
        fail("give --database-url URL (or set LEDGER_DATABASE_URL): import writes to the database", EXIT_USAGE)
    if not file.is_file():
        fail(f"cannot read {file}: no such file", EXIT_USAGE, as_json=as_json)
    verifier = parse_verifier_key(verifier_key, as_json) if verifier_key else None
    from ledger.export import import_export

    try:
        store = database_access(context, as_json).open_ledger(database_url)
    except LedgerError as err:
        fail(str(err), EXIT_USAGE, as_json=as_json)
    try:
        logs = import_export(store, file, verifier, ledger_name)
    except VerificationError as err:
        fail(f"refused, nothing imported: {err}", EXIT_REFUSED, as_json=as_json)
    except LedgerError as err:
        fail(str(err), EXIT_REFUSED, as_json=as_json)
    except OSError as err:
        fail(f"cannot read {file}: {err}", EXIT_USAGE, as_json=as_json)
    finally:
        store.close()
    signed = sum(len(log.checkpoints) for log in logs)
    summary = {
        "ok": True,
        "file": str(file),
        "entries": sum(log.head.size for log in logs),
        "checkpoints": signed,
        "signatures_checked": verifier is not None,
        "logs": [
            {
                "log_id": log.head.log_id,
                "size": log.head.size,
                "head_hash": log.head.head_hash.hex(),
                "root_hash": log.head.root_hash.hex(),
                "checkpoints": [c.size for c in log.checkpoints],
            }
            for log in logs
        ],
    }
    if as_json:
        emit_json(summary)
        return
    for log in logs:
        out.print(
            f"{log.head.log_id}: {log.head.size} entries, Merkle root {log.head.root_hash.hex()}, "
            f"{len(log.checkpoints)} signed checkpoints"
        )
    out.print(f"[green]imported[/] {summary['entries']} entries in {len(logs)} logs, every hash verified")
    if signed and verifier is None:
        out.print(f"the {signed} checkpoints' roots were checked, not their signatures: pass --verifier-key for those")


def register(app: typer.Typer) -> None:
    """Add `export` and `import` as top-level commands of `app` (ledgerctl)."""
    app.command("export")(export_command)
    app.command("import")(import_command)


app = typer.Typer(help="Export and import whole ledger logs as verified JSON Lines.", no_args_is_help=True)
register(app)


if __name__ == "__main__":
    app(prog_name="ledgerctl")
