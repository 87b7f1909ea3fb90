"""`ledgerctl`: the command line for operators, support staff and auditors.

Exit codes scripts can trust: 0 done, 1 the ledger said no (rejected input, failed verification),
2 usage error (bad flags, unreadable file), 3 the server could not be reached.
"""

from __future__ import annotations

import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import grpc
import typer
from rich.table import Table

from client.cli_backfill import ingest_bracket
from client.database import DatabaseAccess
from client.event_file import MAX_REPORTED, EventFileError, FileEvent, read_event_file
from client.ledger_client import LedgerClient
from client.output import (
    DEFAULT_TARGET,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    JsonFlag,
    Target,
    conflict_of,
    emit_json,
    err_console,
    fail,
    out,
    progress_bar,
    quiet_stdout,
    rpc_failure,
)
from ledger.log.entry import LogHead, org_log_id
from ledger.timeutil import system_clock
from wire.convert import event_to_proto

app = typer.Typer(
    help="Usage ledger command line: ingest events, read logs, verify the ledger. The rule IDs (R1-R29) every "
    "charge cites are defined in docs/billing-rules.md; `ledgerctl rules R17` shows one.",
    no_args_is_help=True,
)
events_app = typer.Typer(help="Usage events from the control plane.", no_args_is_help=True)
log_app = typer.Typer(help="Per-org logs and the system log.", no_args_is_help=True)
app.add_typer(events_app, name="events")
app.add_typer(log_app, name="log")


# -- events ---------------------------------------------------------------------------------------


def _read_events(path: Path, as_json: bool) -> list[FileEvent]:
    """The whole file parsed strictly (client.event_file), or exit: 2 when it is not JSON Lines, 1 when events are
    refused. Nothing has been sent either way."""
    try:
        return read_event_file(path, now_micros=system_clock())
    except (OSError, UnicodeDecodeError) as err:
        fail(f"cannot read {path}: {err}", EXIT_USAGE, as_json=as_json)
    except EventFileError as err:
        problems = [
            {"line": p.line, "field": p.field, "description": p.description} for p in err.problems[:MAX_REPORTED]
        ]
        fail(str(err), EXIT_USAGE if err.syntax else EXIT_REFUSED, as_json=as_json, problems=problems)


@events_app.command("ingest")
def events_ingest(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="JSON Lines file of usage events (docs/events.md: exact types).")
    ],
    target: Target = DEFAULT_TARGET,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Events per atomic batch.")] = 1000,
    backfill: Annotated[
        bool | None,
        typer.Option(
            "--backfill/--no-backfill",
            help="R29: send the file inside one backfill per org (default: when all its events are older than the "
            "1 h grace period), so no month-end invoice is issued on the wall clock halfway through it.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Append every event of FILE in batches; re-running the same file appends nothing new (R24).

    The whole file is checked first: one bad line and nothing is sent. A batch the ledger refuses stops the
    ingest; the batches before it stay appended (each batch is atomic) and the message says up to which line.
    """
    read = _read_events(file, as_json)
    messages = [event_to_proto(item.event) for item in read]
    appended = duplicates = 0
    with (
        LedgerClient(target) as client,
        # R29: the org and instant of each event decide whether the file goes inside a backfill, and its range.
        ingest_bracket(client, file, [item.event for item in read], backfill, target, as_json),
        progress_bar(as_json) as progress,
    ):
        task = progress.add_task("ingesting", total=len(messages))
        for start in range(0, len(messages), batch_size):
            batch = messages[start : start + batch_size]
            try:
                results = client.append_events(batch)
            except grpc.RpcError as err:
                _refused(
                    err,
                    file,
                    read[start : start + batch_size],
                    IngestProgress(appended, duplicates, read, start),
                    target,
                    as_json,
                )
            dup = sum(1 for r in results if r.duplicate)
            duplicates += dup
            appended += len(results) - dup
            progress.advance(task, len(batch))
    summary = {"ok": True, "file": str(file), "events": len(messages), "appended": appended, "duplicates": duplicates}
    if as_json:
        emit_json(summary)
    else:
        out.print(
            f"{len(messages)} events read: [green]{appended} appended[/], {duplicates} already in the ledger (R24)"
        )


@dataclass(frozen=True)
class IngestProgress:
    """How far an ingest got before a batch failed: what the file had appended, and where the failed batch starts."""

    appended: int
    duplicates: int
    read: list[FileEvent]
    failed_at: int  # index into `read` of the failed batch's first event

    def describe(self) -> str:
        first_line = self.read[self.failed_at].line
        if self.failed_at == 0:
            return f"nothing of the file was appended (the first batch, from line {first_line}, failed)"
        return (
            f"lines {self.read[0].line}-{self.read[self.failed_at - 1].line} were sent before it: {self.appended} "
            f"appended, {self.duplicates} already in the ledger (R24); nothing from line {first_line} on was appended"
        )

    def json(self) -> dict[str, Any]:
        return {
            "appended": self.appended,
            "duplicates": self.duplicates,
            "sent_through_line": self.read[self.failed_at - 1].line if self.failed_at else None,
            "failed_batch_first_line": self.read[self.failed_at].line,
        }


def _refused(
    err: grpc.RpcError, file: Path, batch: list[FileEvent], progress: IngestProgress, target: str, as_json: bool
) -> NoReturn:
    """Report a failed batch by file line: an R24 conflict names the line and the entry already in the ledger."""
    conflict = conflict_of(err)
    if conflict is None:
        rpc_failure(err, target, as_json, {i: item.line for i, item in enumerate(batch)}, progress.describe())
    line = next((item.line for item in batch if item.event.event_id == conflict.get("event_id")), None)
    stored = f"entry {conflict['sequence']} of org/{conflict.get('org_id')}" if "sequence" in conflict else "an entry"
    message = (
        f"{file}:{line}: event_id {conflict.get('event_id')!r}: R24: the ledger already holds {stored} under this "
        f"event_id with different content (entry hash {conflict.get('entry_hash', '?')[:16]}…); a new fact needs a "
        f"new event_id. {progress.describe()}"
    )
    fail(message, EXIT_REFUSED, as_json=as_json, code="ALREADY_EXISTS", line=line, conflict=conflict, **progress.json())


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
        fail("give exactly one of --org ORG or --log LOG", EXIT_USAGE, as_json=as_json)
    log_id = org_log_id(org) if org is not None else str(log)
    with LedgerClient(target) as client:
        try:
            head = client.head(log_id)
        except grpc.RpcError as err:
            rpc_failure(err, target, as_json)
    if as_json:
        emit_json(_head_json(head))
    else:
        out.print(_heads_table([head]))


@log_app.command("list")
def log_list(target: Target = DEFAULT_TARGET, as_json: JsonFlag = False) -> None:
    """List every log with its size and hashes."""
    with LedgerClient(target) as client:
        try:
            heads = list(client.logs())
        except grpc.RpcError as err:
            rpc_failure(err, target, as_json)
    if as_json:
        emit_json([_head_json(h) for h in heads])
    else:
        out.print(_heads_table(heads))


def _register_subcommands() -> None:
    # Imported here so each command group stays in its own module and cli.py does not import them all at the top.
    from client import cli_audit, cli_usage

    app.add_typer(cli_audit.audit_app, name="audit")
    app.add_typer(cli_usage.prices_app, name="prices")
    app.add_typer(cli_usage.rollups_app, name="rollups")
    app.command("usage")(cli_usage.usage)
    from client import cli_keys, output

    app.callback()(output.connection_options)  # --api-key and --tls-* for every command
    app.add_typer(cli_keys.keys_app, name="keys")
    from client import cli_support

    app.add_typer(cli_support.support_app, name="support")
    from client import cli_account, cli_billing

    app.add_typer(cli_account.account_app, name="account")
    app.add_typer(cli_billing.credits_app, name="credits")
    app.add_typer(cli_billing.invoices_app, name="invoices")
    app.add_typer(cli_billing.payments_app, name="payments")
    from client import cli_export

    cli_export.register(app)  # `ledgerctl export` and `ledgerctl import`
    from client import cli_rules

    app.command("rules")(cli_rules.rules_command)

    from client import cli_backfill

    events_app.add_typer(cli_backfill.backfill_app, name="backfill")  # `ledgerctl events backfill` (R29)


_register_subcommands()


def _unwrap(text: str) -> str:
    """A docstring's paragraphs each on one line: Typer keeps a docstring's line breaks, so a paragraph wrapped
    at 120 columns in the source came out as fragments at a terminal's width (issue #25)."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in paragraph.splitlines()) for paragraph in paragraphs)


def _unwrap_help(typer_app: typer.Typer) -> None:
    for command in typer_app.registered_commands:
        if command.callback is not None and command.callback.__doc__:
            command.callback.__doc__ = _unwrap(command.callback.__doc__)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _unwrap_help(group.typer_instance)


_unwrap_help(app)


def main(argv: list[str] | None = None, *, database: DatabaseAccess | None = None) -> None:
    """ledgerctl's entry point: global options anywhere (client/global_options.py), and a reader that stops
    reading (`ledgerctl ... | head`) ends the command quietly with exit 0, not 1 ("the ledger said no").

    `database` serves the commands that open the database directly (client/database.py); the installed
    command's composition root (ledgerctl/main.py) passes the SQL store's."""
    from client.global_options import MissingValue, lift_global_options

    try:
        args = lift_global_options(sys.argv[1:] if argv is None else argv, os.environ)
    except MissingValue as err:
        err_console.print(f"[bold red]error:[/] {err}")
        raise SystemExit(EXIT_USAGE) from None
    try:
        app(args=args, prog_name="ledgerctl", obj=database)
    except SystemExit as done:
        if _stdout_closed():  # a JSON write into a closed pipe (rich's own writes end in output._Stdout)
            quiet_stdout()
            raise SystemExit(EXIT_OK) from None
        raise done


def _stdout_closed() -> bool:
    # Typer (as Click) answers a write to a closed pipe by wrapping stdout in PacifyFlushWrapper and exiting 1.
    return type(sys.stdout).__name__ == "PacifyFlushWrapper"


if __name__ == "__main__":
    # Without the composition root, so the direct-database commands are unavailable; use `python -m ledgerctl`.
    main()
