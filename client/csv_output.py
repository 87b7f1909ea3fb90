"""`--format csv`: output people paste into a spreadsheet or a ticket (docs/cli.md, "Output"; issue #25 item 4).

RFC 4180: a header row, comma-separated, quoted where needed, CRLF line ends. Cells hold what `--json` holds: money
as exact decimal strings (R21 rounds only invoice lines, which arrive in cents), times as RFC 3339 UTC, so a
spreadsheet sums the same figures the ledger does. Each command says which rows its CSV has.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

import typer

from client.output import EXIT_USAGE, fail

FORMATS = ("text", "json", "csv")
FormatOption = Annotated[
    str,
    typer.Option(
        "--format",
        help="text (the default), json (the same as --json) or csv: RFC 4180 rows with a header, to paste into a "
        "spreadsheet.",
    ),
]


def chosen_format(format_name: str, as_json: bool) -> str:
    """The output format from `--format` and `--json`; both, disagreeing, is a usage error (exit 2)."""
    name = format_name.lower()
    if name not in FORMATS:
        fail(f"--format {format_name!r}: use {', '.join(FORMATS)}", EXIT_USAGE)
    if as_json and name not in ("json", "text"):
        fail(f"--json and --format {name}: give one", EXIT_USAGE)
    return "json" if as_json else name


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def emit_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    sys.stdout.flush()


# -- ledgerctl usage --------------------------------------------------------------------------------------------

USAGE_COLUMNS = (
    "bucket_start", "endpoint_id", "workload_kind", "instance_type", "worker_type", "storage_kind", "unit",
    "quantity", "gigabyte_seconds", "amount", "amount_exact", "amount_fraction",
)  # fmt: skip


# -- ledgerctl invoices -----------------------------------------------------------------------------------------

INVOICE_COLUMNS = (
    "number", "period_start", "cut", "settled_through", "issued_at", "trigger", "subtotal", "discount", "total",
    "credits_total", "amount_due", "payment_status", "late_lines", "currency", "entry",
)  # fmt: skip


def invoice_rows(invoices: Iterable[Mapping[str, Any]]) -> Iterable[dict[str, Any]]:
    """One row per invoice (its --json form, flattened); figures in cents (R21)."""
    for invoice in invoices:
        entry = invoice["entry"]
        yield {
            **invoice,
            "period_start": invoice["period"]["start"],
            "entry": f"{entry['log_id']}:{entry['sequence']}",
        }


INVOICE_LINE_COLUMNS = (
    "invoice", "kind", "rule", "description", "usage_start", "usage_end", "quantity", "unit", "unit_price",
    "price_unit", "amount", "late", "reversal", "endpoint_id", "workload_kind", "instance_type", "worker_type",
    "storage_kind", "volume_id", "reference",
)  # fmt: skip


def invoice_line_rows(invoice: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    """One row per line of one invoice; amounts in cents (R21), late and reversal lines marked (R22)."""
    for line in invoice["lines"]:
        period = line["usage_period"] or {}
        yield {**line, "invoice": invoice["number"], "usage_start": period.get("start"), "usage_end": period.get("end")}


# -- ledgerctl support lookup -----------------------------------------------------------------------------------

LOOKUP_COLUMNS = (
    "line", "workload_id", "volume_id", "start", "end", "quantity", "unit", "unit_price", "amount", "amount_exact",
    "invoice", "late", "rules", "entry", "explanation",
)  # fmt: skip


def lookup_rows(report: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    """A dispute lookup (R27) as rows: the request's share (R25); per session its range of units as due now (R10-R12)
    and as each invoice charged it (R17, R22); each storage interval (R13, R14), zero line and adjustment (R23).
    The `amount` column of the `due`, `storage` and `adjustment` rows adds up to the lookup's total due now; a
    storage share that repeats is `amount` to 50 digits, and exactly in `amount_exact` (docs/money.md)."""
    request = report.get("request")
    if request is not None:
        yield {
            "line": "request",
            "workload_id": request["workload_id"],
            "start": request["in_flight_from"],
            "end": request["in_flight_to"],
            "quantity": request["attributed_seconds"],
            "unit": "second",
            "amount": request["attributed_amount"],
            "rules": " ".join(request["rules"]),
            "entry": request["refs"][0]["ref"] if request["refs"] else None,
            "explanation": request["explanation"],
        }
    for session in report["sessions"]:
        up_entry = session["refs"][0]["ref"] if session["refs"] else None
        for run in session["units"]:
            yield {
                "line": "due",
                "workload_id": session["workload_id"],
                "start": run["first_unit_start"],
                "quantity": run["count"],
                "unit": session["unit"],
                "unit_price": run["unit_price"],
                "amount": run["amount"],
                "invoice": run["invoice"]["invoice_id"],
                "late": run["invoice"]["late"],
                "rules": "R10 R11 R12",
                "entry": up_entry,
                "explanation": run["explanation"],
            }
        for charged in session.get("invoiced", ()):
            yield {
                "line": "reversed" if charged["reversal"] else "invoiced",
                "workload_id": session["workload_id"],
                "quantity": charged["count"],
                "unit": session["unit"],
                "unit_price": charged["unit_price"],
                "amount": charged["amount"],
                "invoice": charged["invoice_id"],
                "late": charged["late"],
                "rules": "R22" if charged["reversal"] else "R12 R17",
                "entry": charged["invoice_ref"]["ref"] if charged["invoice_ref"] else None,
                "explanation": charged["explanation"],
            }
    for line in report["storage"]:
        yield {
            "line": "storage",
            "workload_id": line["workload_id"],
            "volume_id": line["volume_id"],
            "start": line["start"],
            "end": line["end"],
            "quantity": line["interval_seconds"],
            "unit": "second",
            "amount": line["amount"],
            "amount_exact": line.get("amount_exact") or line["amount"],
            "invoice": line["invoice"]["invoice_id"],
            "late": line["invoice"]["late"],
            "rules": line["rule"],
            "entry": line["ref"]["ref"],
            "explanation": line["explanation"],
        }
    for zero in report["zero_lines"]:
        yield {
            "line": "not billed",
            "workload_id": zero["workload_id"],
            "start": zero["start"],
            "end": zero["end"],
            "amount": "0",
            "rules": zero["rule"],
            "entry": " ".join(ref["ref"] for ref in zero["refs"]),
            "explanation": zero["explanation"],
        }
    for adjustment in report["adjustments"]:
        yield {
            "line": "adjustment",
            "amount": adjustment["amount"],
            "invoice": adjustment["invoice"]["invoice_id"],
            "rules": "R23",
            "entry": adjustment["ref"]["ref"],
            "explanation": adjustment["explanation"],
        }
