"""`ledgerctl audit`: verify hash chains, Merkle trees and index columns, from the database or through the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import grpc
import typer
from rich.table import Table

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
from ledger.audit import AuditReport, LogVerification, verify
from ledger.entry import Entry, LogHead, org_log_id
from ledger.errors import LedgerError, NotFound
from ledger.store import IndexColumns

audit_app = typer.Typer(help="Verify the ledger: hash chains, Merkle trees, index columns.", no_args_is_help=True)


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
            fail(str(err), EXIT_USAGE, as_json=as_json)
    else:
        client = LedgerClient(target)
        store = _RemoteLogs(client)
    try:
        with progress_bar(as_json) as progress:
            task = progress.add_task("verifying", total=None)
            report = verify(
                store, log_ids, lambda log_id, n: progress.update(task, description=f"verifying {log_id}", completed=n)
            )
    except grpc.RpcError as err:
        rpc_failure(err, target, as_json)
    finally:
        if client is not None:
            client.close()
        elif database_url:
            store.close()
    _print_report(report, as_json)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_REFUSED)


def _print_report(report: AuditReport, as_json: bool) -> None:
    if as_json:
        emit_json(
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
