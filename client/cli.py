"""`ledgerctl`: the command line for operators, support staff and auditors.

Exit codes scripts can trust: 0 done, 1 the ledger said no (rejected input, failed verification),
2 usage error (bad flags, unreadable file), 3 the server could not be reached.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from rich.table import Table

from client.ledger_client import LedgerClient
from client.output import (
    DEFAULT_TARGET,
    EXIT_REFUSED,
    EXIT_USAGE,
    JsonFlag,
    Target,
    emit_json,
    fail,
    out,
    progress_bar,
    rpc_failure,
)
from ledger.entry import LogHead, org_log_id

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


def _read_jsonl(path: Path, as_json: bool) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        fail(f"cannot read {path}: {err}", EXIT_USAGE, as_json=as_json)
    records: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_float=lambda s: float(s))
        except json.JSONDecodeError as err:
            fail(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno})", EXIT_USAGE, as_json=as_json)
        if not isinstance(record, dict):
            fail(f"{path}:{number}: each line must be one JSON object (a usage event)", EXIT_USAGE, as_json=as_json)
        records.append((number, record))
    return records


@events_app.command("ingest")
def events_ingest(
    file: Annotated[Path, typer.Argument(help="JSON Lines of usage events (docs/billing-rules.md field names).")],
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
    """Append every event of FILE in batches; re-running the same file appends nothing new (R24)."""
    from client.cli_backfill import ingest_bracket
    from server.convert import raw_to_event

    records = _read_jsonl(file, as_json)
    messages = []
    for number, record in records:
        try:
            messages.append(raw_to_event(record))
        except (ValueError, TypeError) as err:
            fail(f"{file}:{number}: {err}", EXIT_REFUSED, as_json=as_json)
    appended = duplicates = 0
    raws = [record for _, record in records]
    with (
        LedgerClient(target) as client,
        ingest_bracket(client, file, raws, backfill, target, as_json),
        progress_bar(as_json) as progress,
    ):
        task = progress.add_task("ingesting", total=len(messages))
        for start in range(0, len(messages), batch_size):
            batch = messages[start : start + batch_size]
            try:
                results = client.append_events(batch)
            except grpc.RpcError as err:
                line_of = {i: records[start + i][0] for i in range(len(batch))}
                rpc_failure(err, target, as_json, line_of)
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


def main() -> None:
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    app(prog_name="ledgerctl")


if __name__ == "__main__":
    main()
