"""`ledgerctl events backfill open|close|list`, and the bracket `ledgerctl events ingest` puts around past events.

R29: events of a past range are sent inside a backfill, so R17's grace period issues no month-end invoice of a month
the backfill overlaps while it is open (invoices still follow the settled-through time, R28). A file whose events
are all older than the grace period is bracketed on its own: one backfill per org, opened before its first batch
and closed after its last.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from rich.table import Table
from usageledger.v1 import ledger_pb2 as pb

from client.cli_billing import call, connect
from client.ledger_client import LedgerClient
from client.output import DEFAULT_TARGET, EXIT_USAGE, JsonFlag, Target, emit_json, fail, out, rpc_failure, when
from ledger.billing.engine import DEFAULT_INVOICE_GRACE_SECONDS
from ledger.events import UsageEvent
from ledger.timeutil import format_micros, parse_rfc3339_micros
from wire.convert import micros_to_timestamp

backfill_app = typer.Typer(help="R29: bracket past events sent late (backfills).", no_args_is_help=True)


def backfill_json(backfill: pb.Backfill) -> dict[str, Any]:
    return {
        "org_id": backfill.org_id,
        "backfill_id": backfill.backfill_id,
        "from": when(backfill.from_time),
        "to": when(backfill.to_time),
        "reason": backfill.reason,
        "open": backfill.open,
        "opened_at": when(backfill.open_time),
        "closed_at": when(backfill.close_time) if backfill.HasField("close_time") else None,
        "close_reason": backfill.close_reason or None,
        "entries": {"opened": backfill.open_sequence, "closed": backfill.close_sequence or None},
    }


def _instant(text: str, name: str, as_json: bool) -> int:
    try:
        return parse_rfc3339_micros(text)
    except ValueError as err:
        fail(f"{name}: {text!r} is not an RFC 3339 time ({err})", EXIT_USAGE, as_json=as_json)
        raise


@backfill_app.command("open")
def backfill_open(
    org: Annotated[str, typer.Argument(metavar="ORG", help="The org whose past events are sent.")],
    backfill_id: Annotated[
        str, typer.Argument(metavar="BACKFILL_ID", help="A name for the backfill, unique in the org.")
    ],
    start: Annotated[str, typer.Option("--from", help="Start of the range backfilled (RFC 3339).")],
    end: Annotated[str, typer.Option("--to", help="End of the range backfilled, exclusive (RFC 3339).")],
    reason: Annotated[str, typer.Option(help="Why the events come late.")] = "past events sent late",
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
) -> None:
    """Open a backfill: while it is open the grace issues no month-end invoice of a month it overlaps (R29)."""
    request = pb.OpenBackfillRequest(
        org_id=org,
        backfill_id=backfill_id,
        from_time=micros_to_timestamp(_instant(start, "--from", as_json)),
        to_time=micros_to_timestamp(_instant(end, "--to", as_json)),
        reason=reason,
    )
    with connect(target, as_json) as client:
        response = call(client, client.stub.OpenBackfill, request)
    _show(response.backfill, as_json, "already open" if response.already_open else "opened")


@backfill_app.command("close")
def backfill_close(
    org: Annotated[str, typer.Argument(metavar="ORG", help="The org.")],
    backfill_id: Annotated[str, typer.Argument(metavar="BACKFILL_ID", help="The backfill to close.")],
    reason: Annotated[str, typer.Option(help="Why it ends.")] = "every past event sent",
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
) -> None:
    """Close a backfill (R29): the grace may issue the month-end invoices it held back."""
    request = pb.CloseBackfillRequest(org_id=org, backfill_id=backfill_id, reason=reason)
    with connect(target, as_json) as client:
        response = call(client, client.stub.CloseBackfill, request)
    _show(response.backfill, as_json, "closed")


@backfill_app.command("list")
def backfill_list(
    org: Annotated[str, typer.Argument(metavar="ORG", help="The org.")],
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
) -> None:
    """Every backfill of an org, oldest first (R29)."""
    found: list[pb.Backfill] = []
    token = ""
    with connect(target, as_json) as client:
        while True:
            request = pb.ListBackfillsRequest(org_id=org, page_size=500, page_token=token)
            response = call(client, client.stub.ListBackfills, request)
            found.extend(response.backfills)
            token = response.next_page_token
            if not token:
                break
    if as_json:
        emit_json({"org_id": org, "backfills": [backfill_json(b) for b in found]})
        return
    table = Table("backfill", "range", "state", "opened", "closed", title=org)
    for b in found:
        closed = f"{when(b.close_time)}: {b.close_reason}" if b.HasField("close_time") else "-"
        state = "[yellow]open[/]" if b.open else "closed"
        table.add_row(b.backfill_id, f"{when(b.from_time)} to {when(b.to_time)}", state, when(b.open_time), closed)
    out.print(table)
    if not found:
        out.print(f"no backfills for {org} (R29)")


def _show(backfill: pb.Backfill, as_json: bool, what: str) -> None:
    if as_json:
        emit_json({"ok": True, "result": what, "backfill": backfill_json(backfill)})
        return
    out.print(
        f"backfill {backfill.backfill_id} of {backfill.org_id} ({when(backfill.from_time)} to "
        f"{when(backfill.to_time)}) {what} (R29)"
    )


# -- the bracket around `ledgerctl events ingest` ------------------------------------------------------------------


def org_ranges(events: Iterable[UsageEvent]) -> dict[str, tuple[int, int]]:
    """Per org, [earliest, latest + 1 us) of the events' occurred_at."""
    ranges: dict[str, tuple[int, int]] = {}
    for event in events:
        org, micros = event.org_id, event.occurred_at
        low, high = ranges.get(org, (micros, micros + 1))
        ranges[org] = (min(low, micros), max(high, micros + 1))
    return ranges


def needs_backfill(ranges: Mapping[str, tuple[int, int]], now: int, grace_seconds: int) -> bool:
    """R29: a file whose events are all older than the grace period is past events, sent late."""
    return bool(ranges) and max(end for _, end in ranges.values()) <= now - grace_seconds * 1_000_000


@contextmanager
def bracket(
    client: LedgerClient, file_bytes: bytes, events: Sequence[UsageEvent], wanted: bool | None
) -> Iterator[list[str]]:
    """Open one backfill per org of the file before the body runs and close them after it (R29), when `wanted`, or
    when None and the file's events are older than the default grace period. Yields the backfill ids opened."""
    ranges = org_ranges(events)
    now = int(datetime.now().timestamp() * 1_000_000)
    use = needs_backfill(ranges, now, DEFAULT_INVOICE_GRACE_SECONDS) if wanted is None else wanted
    if not use:
        yield []
        return
    name = "ingest-" + hashlib.sha256(file_bytes).hexdigest()[:16]
    opened = []
    for org, (start, end) in sorted(ranges.items()):
        request = pb.OpenBackfillRequest(
            org_id=org,
            backfill_id=name,
            from_time=micros_to_timestamp(start),
            to_time=micros_to_timestamp(end),
            reason=f"R29: ledgerctl events ingest of past events ({format_micros(start)} to {format_micros(end)})",
        )
        call(client, client.stub.OpenBackfill, request)
        opened.append(org)
    reason = "R29: the ingest stopped before the end of the file"  # so the grace is not held back for 24 h
    try:
        yield [name] * len(opened)
        reason = "R29: every event of the file sent"
    finally:
        for org in opened:
            request = pb.CloseBackfillRequest(org_id=org, backfill_id=name, reason=reason)
            call(client, client.stub.CloseBackfill, request)


@contextmanager
def ingest_bracket(
    client: LedgerClient, file: Path, events: Sequence[UsageEvent], wanted: bool | None, target: str, as_json: bool,
) -> Iterator[list[str]]:  # fmt: skip
    """bracket() for `ledgerctl events ingest`: a failed open or close exits as any RPC failure does."""
    try:
        with bracket(client, file.read_bytes(), events, wanted) as opened:
            yield opened
    except grpc.RpcError as err:
        rpc_failure(err, target, as_json)
