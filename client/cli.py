"""`ledgerctl`: the command line for operators, support staff and auditors.

Exit codes scripts can trust: 0 done, 1 the ledger said no (rejected input, failed verification),
2 usage error (bad flags, unreadable file), 3 the server could not be reached.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import grpc
import typer
from grpc_status import rpc_status
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from client.ledger_client import LedgerClient
from ledger.audit import AuditReport, LogVerification, verify
from ledger.entry import Entry, LogHead, org_log_id
from ledger.errors import LedgerError
from ledger.store import IndexColumns

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
DEFAULT_TARGET = "127.0.0.1:50051"

app = typer.Typer(help="Usage ledger command line: ingest events, read logs, verify the ledger.", no_args_is_help=True)
events_app = typer.Typer(help="Usage events from the control plane.", no_args_is_help=True)
log_app = typer.Typer(help="Per-org logs and the system log.", no_args_is_help=True)
audit_app = typer.Typer(help="Verify the ledger: hash chains, Merkle trees, index columns.", no_args_is_help=True)
app.add_typer(events_app, name="events")
app.add_typer(log_app, name="log")
app.add_typer(audit_app, name="audit")

err_console = Console(stderr=True)
out = Console()

Target = Annotated[str, typer.Option("--target", envvar="LEDGER_TARGET", help="Ledger server HOST:PORT.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def _emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def _fail(message: str, code: int, *, as_json: bool = False, **extra: Any) -> NoReturn:
    if as_json:
        _emit_json({"ok": False, "error": message, **extra})
    else:
        err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _rpc_failure(err: grpc.RpcError, target: str, as_json: bool, line_of: dict[int, int] | None = None) -> NoReturn:
    code = err.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        _fail(
            f"cannot reach the ledger at {target} ({err.details()}); start it with `ledger-server` or pass --target",
            EXIT_UNREACHABLE,
            as_json=as_json,
        )
    violations = _violations(err)
    if line_of is not None:
        violations = [_with_line(field, desc, line_of) for field, desc in violations]
    if as_json:
        _emit_json(
            {
                "ok": False,
                "code": code.name,
                "error": err.details(),
                "violations": [{"field": f, "description": d} for f, d in violations],
            }
        )
    else:
        err_console.print(f"[bold red]error ({code.name}):[/] {err.details()}")
        for field, description in violations:
            err_console.print(f"  {field}: {description}")
    raise typer.Exit(EXIT_REFUSED)


def _violations(err: grpc.RpcError) -> list[tuple[str, str]]:
    from google.rpc import error_details_pb2

    status = rpc_status.from_call(err)
    found: list[tuple[str, str]] = []
    if status is None:
        return found
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend((v.field, v.description) for v in bad.field_violations)
    return found


def _with_line(field: str, description: str, line_of: dict[int, int]) -> tuple[str, str]:
    """Turn `events[12].occur_time` into `line 57: occur_time` for a person reading a file."""
    if field.startswith("events[") and "]" in field:
        index = int(field[len("events[") : field.index("]")])
        rest = field[field.index("]") + 2 :]
        if index in line_of:
            return f"line {line_of[index]}: {rest}", description
    return field, description


# -- events ---------------------------------------------------------------------------------------


def _read_jsonl(path: Path, as_json: bool) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        _fail(f"cannot read {path}: {err}", EXIT_USAGE, as_json=as_json)
    records: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_float=lambda s: float(s))
        except json.JSONDecodeError as err:
            _fail(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno})", EXIT_USAGE, as_json=as_json)
        if not isinstance(record, dict):
            _fail(f"{path}:{number}: each line must be one JSON object (a usage event)", EXIT_USAGE, as_json=as_json)
        records.append((number, record))
    return records


@events_app.command("ingest")
def events_ingest(
    file: Annotated[Path, typer.Argument(help="JSON Lines file of usage events (billing-rules.md field names).")],
    target: Target = DEFAULT_TARGET,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Events per atomic batch.")] = 1000,
    as_json: JsonFlag = False,
) -> None:
    """Append every event of FILE in batches; re-running the same file appends nothing new (R24)."""
    from server.convert import raw_to_event

    records = _read_jsonl(file, as_json)
    messages = []
    for number, record in records:
        try:
            messages.append(raw_to_event(record))
        except (ValueError, TypeError) as err:
            _fail(f"{file}:{number}: {err}", EXIT_REFUSED, as_json=as_json)
    appended = duplicates = 0
    with LedgerClient(target) as client, _progress(as_json) as progress:
        task = progress.add_task("ingesting", total=len(messages))
        for start in range(0, len(messages), batch_size):
            batch = messages[start : start + batch_size]
            try:
                results = client.append_events(batch)
            except grpc.RpcError as err:
                line_of = {i: records[start + i][0] for i in range(len(batch))}
                _rpc_failure(err, target, as_json, line_of)
            dup = sum(1 for r in results if r.duplicate)
            duplicates += dup
            appended += len(results) - dup
            progress.advance(task, len(batch))
    summary = {"ok": True, "file": str(file), "events": len(messages), "appended": appended, "duplicates": duplicates}
    if as_json:
        _emit_json(summary)
    else:
        out.print(
            f"{len(messages)} events read: [green]{appended} appended[/], {duplicates} already in the ledger (R24)"
        )


def _progress(as_json: bool) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=as_json or not err_console.is_terminal,
        transient=True,
    )


# -- logs -----------------------------------------------------------------------------------------


def _head_json(head: LogHead) -> dict[str, Any]:
    return {
        "log_id": head.log_id,
        "size": head.size,
        "head_hash": head.head_hash.hex(),
        "root_hash": head.root_hash.hex(),
    }


def _heads_table(heads: list[LogHead]) -> Table:
    table = Table("log", "entries", "head hash", "Merkle root")
    for head in heads:
        table.add_row(head.log_id, str(head.size), head.head_hash.hex()[:16] + "…", head.root_hash.hex()[:16] + "…")
    return table


@log_app.command("head")
def log_head(
    org: Annotated[str | None, typer.Option("--org", help="Org ID (its log is org/ORG).")] = None,
    log: Annotated[str | None, typer.Option("--log", help="A log ID such as `system`.")] = None,
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
) -> None:
    """Show a log's size, head hash and Merkle root."""
    if (org is None) == (log is None):
        _fail("give exactly one of --org ORG or --log LOG", EXIT_USAGE, as_json=as_json)
    log_id = org_log_id(org) if org is not None else str(log)
    with LedgerClient(target) as client:
        try:
            head = client.head(log_id)
        except grpc.RpcError as err:
            _rpc_failure(err, target, as_json)
    if as_json:
        _emit_json(_head_json(head))
    else:
        out.print(_heads_table([head]))


@log_app.command("list")
def log_list(target: Target = DEFAULT_TARGET, as_json: JsonFlag = False) -> None:
    """List every log with its size and hashes."""
    with LedgerClient(target) as client:
        try:
            heads = list(client.logs())
        except grpc.RpcError as err:
            _rpc_failure(err, target, as_json)
    if as_json:
        _emit_json([_head_json(h) for h in heads])
    else:
        out.print(_heads_table(heads))


# -- audit ----------------------------------------------------------------------------------------


class _RemoteLogs:
    """Audit through the API: entries as served, checked against the server's head. Index columns and stored
    Merkle nodes are not exposed, so those two checks need --database-url."""

    def __init__(self, client: LedgerClient) -> None:
        self.client = client

    def head(self, log_id: str) -> LogHead:
        try:
            return self.client.head(log_id)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                from ledger.errors import NotFound

                raise NotFound(err.details()) from err
            raise

    def list_logs(self, after: str, limit: int) -> list[LogHead]:
        return [h for h in self.client.logs() if h.log_id > after][:limit]

    def audit_rows(self, log_id: str, start: int = 0) -> Iterator[tuple[Entry, IndexColumns | None, bytes | None]]:
        for entry in self.client.entries(log_id, start):
            yield entry, None, None


@audit_app.command("verify")
def audit_verify(
    org: Annotated[str | None, typer.Option("--org", help="Verify only this org's log.")] = None,
    all_logs: Annotated[bool, typer.Option("--all", help="Verify every log (the default).")] = False,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="LEDGER_DATABASE_URL",
            help="Read the database directly (also checks index columns and stored Merkle nodes).",
        ),
    ] = None,
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
) -> None:
    """Recompute every hash chain and Merkle root from the stored bytes; exit 1 naming the first bad entry."""
    log_ids = [org_log_id(org)] if org else None
    store: Any
    client: LedgerClient | None = None
    if database_url:
        from ledger.sqlstore import open_store

        try:
            store = open_store(database_url)
        except LedgerError as err:
            _fail(str(err), EXIT_USAGE, as_json=as_json)
    else:
        client = LedgerClient(target)
        store = _RemoteLogs(client)
    try:
        with _progress(as_json) as progress:
            task = progress.add_task("verifying", total=None)
            report = verify(
                store, log_ids, lambda log_id, n: progress.update(task, description=f"verifying {log_id}", completed=n)
            )
    except grpc.RpcError as err:
        _rpc_failure(err, target, as_json)
    finally:
        if client is not None:
            client.close()
        elif database_url:
            store.close()
    _print_report(report, as_json)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_REFUSED)


def _print_report(report: AuditReport, as_json: bool) -> None:
    if as_json:
        _emit_json(
            {
                "ok": report.ok,
                "entries": report.entries,
                "logs": [_verification_json(v) for v in report.logs],
                "first_failure": _verification_json(report.first_failure()) if not report.ok else None,
            }
        )
        return
    table = Table("log", "entries verified", "Merkle root", "result")
    for v in report.logs:
        table.add_row(v.log_id, str(v.size), v.root_hash.hex()[:16] + "…", "[green]ok[/]" if v.ok else "[red]FAILED[/]")
    out.print(table)
    bad = report.first_failure()
    if bad is None:
        out.print(f"[green]verified[/] {report.entries} entries in {len(report.logs)} logs")
    else:
        err_console.print(f"[bold red]verification failed:[/] {bad.failure}")


def _verification_json(v: LogVerification | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {
        "log_id": v.log_id,
        "ok": v.ok,
        "entries_verified": v.size,
        "root_hash": v.root_hash.hex(),
        "head_hash": v.head_hash.hex(),
        "failure": v.failure,
        "failed_sequence": v.failed_sequence,
    }


def main() -> None:
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    app(prog_name="ledgerctl")


if __name__ == "__main__":
    main()
