"""`ledgerctl prices`, `ledgerctl usage` and `ledgerctl rollups`: price books (R11, R12) and rated usage (R10)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
import yaml
from rich.table import Table
from usageledger.v1 import pricing_pb2 as ppb
from usageledger.v1 import pricing_pb2_grpc as ppb_grpc
from usageledger.v1 import usage_pb2 as upb
from usageledger.v1 import usage_pb2_grpc as upb_grpc

from client.csv_output import USAGE_COLUMNS, FormatOption, chosen_format, emit_csv
from client.ledger_client import LedgerClient
from client.output import (
    DEFAULT_TARGET,
    EXIT_USAGE,
    REPEATS_NOTE,
    TIME_HELP,
    JsonFlag,
    OrgOption,
    Target,
    as_fraction,
    emit_json,
    exact_amount,
    fail,
    gigabyte_seconds_text,
    out,
    rpc_failure,
    timestamp_option,
    when,
)

prices_app = typer.Typer(help="Price books: per-second flex and active rates per instance type (R11, R12).")
rollups_app = typer.Typer(help="Derived usage rollups (rebuildable from the logs).")

_GROUPS = {
    "endpoint": upb.GROUP_BY_ENDPOINT,
    "workload_kind": upb.GROUP_BY_WORKLOAD_KIND,
    "instance_type": upb.GROUP_BY_INSTANCE_TYPE,
    "worker_type": upb.GROUP_BY_WORKER_TYPE,
}
_BUCKETS = {"hour": upb.BUCKET_HOUR, "day": upb.BUCKET_DAY}


def _book_json(book: ppb.PriceBook) -> dict[str, Any]:
    return {
        "version": book.version,
        "effective_from": when(book.effective_time),
        "note": book.note,
        "currency": book.currency_code,
        "rates": {
            r.instance_type: {"flex_per_second": r.flex_per_second, "active_per_second": r.active_per_second}
            for r in book.rates
        },
    }


def _print_book(book: ppb.PriceBook) -> None:
    table = Table(
        "instance type",
        "flex $/s",
        "active $/s",
        "flex $/min",
        "active $/min",
        title=f"price book v{book.version}, in force from {when(book.effective_time)}",
    )
    from decimal import Decimal

    for r in book.rates:
        table.add_row(
            r.instance_type,
            r.flex_per_second,
            r.active_per_second,
            str(Decimal(r.flex_per_second) * 60),
            str(Decimal(r.active_per_second) * 60),
        )
    out.print(table)


@prices_app.command("set")
def prices_set(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="JSON or YAML with effective_from, note and rates (per instance type: flex_per_second and "
            "active_per_second).",
        ),
    ],
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
) -> None:
    """Append a price-book version (R12); its rates are merged over the version in force at effective_from."""
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))  # YAML is a superset of JSON
    except (OSError, yaml.YAMLError) as err:
        fail(f"cannot read {file}: {err}", EXIT_USAGE, as_json=as_json)
    if not isinstance(raw, dict) or not isinstance(raw.get("rates"), dict):
        fail(f"{file}: expected a mapping with `rates`", EXIT_USAGE, as_json=as_json)
    request = ppb.SetPriceBookRequest(note=str(raw.get("note", "")))
    for name, pair in raw["rates"].items():
        if not isinstance(pair, dict):
            fail(f"{file}: rates[{name!r}] must map flex_per_second and active_per_second", EXIT_USAGE, as_json=as_json)
        request.rates.append(
            ppb.InstanceRate(
                instance_type=str(name),
                flex_per_second=str(pair.get("flex_per_second", "")),
                active_per_second=str(pair.get("active_per_second", "")),
            )
        )
    if raw.get("effective_from"):
        request.effective_time.CopyFrom(timestamp_option(str(raw["effective_from"]), "effective_from", as_json))
    with LedgerClient(target) as client:
        try:
            response = client.call(ppb_grpc.PricingServiceStub(client.channel).SetPriceBook, request)
        except grpc.RpcError as err:
            rpc_failure(err, target, as_json)
    if as_json:
        emit_json(_book_json(response.price_book))
    else:
        _print_book(response.price_book)


@prices_app.command("show")
def prices_show(
    at: Annotated[str | None, typer.Option("--at", help="The instant: " + TIME_HELP + " (default: now).")] = None,
    all_versions: Annotated[bool, typer.Option("--all", help="Every version, in effective order.")] = False,
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
) -> None:
    """Show the price book in force at an instant (R12)."""
    with LedgerClient(target) as client:
        stub = ppb_grpc.PricingServiceStub(client.channel)
        try:
            if all_versions:
                books = list(client.call(stub.ListPriceBooks, ppb.ListPriceBooksRequest()).price_books)
            else:
                request = ppb.GetPriceBookRequest()
                if at:
                    request.at_time.CopyFrom(timestamp_option(at, "--at", as_json))
                books = [client.call(stub.GetPriceBook, request).price_book]
        except grpc.RpcError as err:
            rpc_failure(err, target, as_json)
    if as_json:
        emit_json([_book_json(b) for b in books] if all_versions else _book_json(books[0]))
    else:
        for book in books:
            _print_book(book)


def usage(
    org: OrgOption,
    start: Annotated[str, typer.Option("--from", help="Window start (inclusive): " + TIME_HELP + ".")],
    end: Annotated[str, typer.Option("--to", help="Window end (exclusive), the same forms.")],
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="Only this endpoint.")] = None,
    group_by: Annotated[
        str, typer.Option("--group-by", help="Comma list of endpoint, workload_kind, instance_type, worker_type.")
    ] = "",
    bucket: Annotated[str | None, typer.Option("--bucket", help="hour or day (UTC).")] = None,
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
    format_name: FormatOption = "text",
) -> None:
    """Billed units (R10) and exact amounts per group and bucket, plus storage lines (R13, R14)."""
    output = chosen_format(format_name, as_json)
    as_json, as_csv = output == "json", output == "csv"
    request = upb.QueryUsageRequest(org_id=org, endpoint_id=endpoint or "")
    request.start_time.CopyFrom(timestamp_option(start, "--from", as_json))
    request.end_time.CopyFrom(timestamp_option(end, "--to", as_json))
    for name in filter(None, (g.strip() for g in group_by.split(","))):
        if name not in _GROUPS:
            fail(f"--group-by {name!r}: use {', '.join(_GROUPS)}", EXIT_USAGE, as_json=as_json)
        request.group_by.append(_GROUPS[name])
    if bucket is not None:
        if bucket not in _BUCKETS:
            fail(f"--bucket {bucket!r}: use hour or day", EXIT_USAGE, as_json=as_json)
        request.bucket = _BUCKETS[bucket]
    with LedgerClient(target) as client:
        try:
            response = client.call(upb_grpc.UsageServiceStub(client.channel).QueryUsage, request)
        except grpc.RpcError as err:
            rpc_failure(err, target, as_json)
    rows = [_row_json(r, bucket is not None) for r in response.rows]
    total_exact = exact_amount(response.total_amount, response.total_amount_fraction)
    if as_csv:
        emit_csv(USAGE_COLUMNS, rows)  # one row per usage row; the total is their sum
        return
    if as_json:
        emit_json(
            {
                "org_id": org,
                "rows": rows,
                "total": response.total_amount,
                "total_exact": total_exact,
                "total_fraction": response.total_amount_fraction or None,
                "currency": response.currency_code,
            }
        )
        return
    table = Table(title=f"usage of {org}, {start} to {end}")
    # Only the dimensions the rows carry: without --group-by every row's endpoint, kind, ... is empty, and a
    # column of blanks says nothing (issue #25).
    dimensions = [
        (title, key)
        for title, key in (
            ("endpoint", "endpoint_id"),
            ("kind", "workload_kind"),
            ("instance", "instance_type"),
            ("worker", "worker_type"),
            ("storage", "storage_kind"),
        )
        if any(row.get(key) for row in rows)
    ]
    storage = any(gigabyte_seconds_text(row) for row in rows)
    columns = (["bucket"] if bucket else []) + [title for title, _ in dimensions] + ["unit", "quantity"]
    columns += ["GB-seconds (R14: first 1,000 GB + beyond)"] if storage else []
    columns += ["amount"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("bucket", "endpoint", "kind", "instance") else "right")
    for row in rows:
        values = [row.get("bucket_start", "")] if bucket else []
        values += [row.get(key) or "" for _, key in dimensions]
        values += [row["unit"], str(row["quantity"])]
        values += [gigabyte_seconds_text(row)] if storage else []
        values += [row["amount_exact"]]
        table.add_row(*values)
    out.print(table)
    out.print(f"total {total_exact} {response.currency_code}" + as_fraction(response.total_amount_fraction))
    if any("(" in row["amount_exact"] for row in rows) or "(" in total_exact:
        out.print(REPEATS_NOTE)


def _row_json(row: upb.UsageRow, bucketed: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "endpoint_id": row.endpoint_id or None,
        "workload_kind": row.workload_kind or None,
        "instance_type": row.instance_type or None,
        "worker_type": row.worker_type or None,
        "unit": row.unit,
        "quantity": row.quantity,
        "amount": row.amount,
        "amount_exact": exact_amount(row.amount, row.amount_fraction),
        "amount_fraction": row.amount_fraction or None,
    }
    if row.storage_kind:
        data["storage_kind"] = row.storage_kind
        data["gigabyte_seconds"] = row.gigabyte_seconds or None
        if row.first_tier_gigabyte_seconds:
            data["first_tier_gigabyte_seconds"] = row.first_tier_gigabyte_seconds
            data["beyond_tier_gigabyte_seconds"] = row.beyond_tier_gigabyte_seconds
    if bucketed:
        data["bucket_start"] = when(row.bucket_start_time)
    return data


@rollups_app.command("rebuild")
def rollups_rebuild(
    org: OrgOption,
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
) -> None:
    """Drop the org's derived rollups and re-derive them from its log."""
    with LedgerClient(target) as client:
        try:
            response = client.call(
                upb_grpc.UsageServiceStub(client.channel).RebuildRollups, upb.RebuildRollupsRequest(org_id=org)
            )
        except grpc.RpcError as err:
            rpc_failure(err, target, as_json)
    if as_json:
        emit_json({"ok": True, "org_id": org, "entries": response.entries, "workloads": response.workloads})
    else:
        out.print(f"rebuilt rollups of {org}: {response.entries} entries read, {response.workloads} workloads rated")
