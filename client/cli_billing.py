"""`ledgerctl credits|invoices|payments`: grant credits (R16), read and close invoices (R17-R23), record payments."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, TypeVar

import grpc
import typer
from google.protobuf.timestamp_pb2 import Timestamp
from rich.table import Table
from usageledger.v1 import account_pb2 as apb
from usageledger.v1 import billing_pb2 as bpb
from usageledger.v1 import billing_pb2_grpc as bpb_grpc

from client.csv_output import (
    INVOICE_COLUMNS,
    INVOICE_LINE_COLUMNS,
    FormatOption,
    chosen_format,
    emit_csv,
    invoice_line_rows,
    invoice_rows,
)
from client.ledger_client import LedgerClient
from client.output import (
    DEFAULT_TARGET,
    EXIT_REFUSED,
    EXIT_USAGE,
    TIME_HELP,
    JsonFlag,
    OrgOption,
    Target,
    emit_json,
    fail,
    instant_option,
    out,
    rpc_failure,
    when,
)
from wire.convert import micros_to_timestamp

T = TypeVar("T")
TIMEOUT_SECONDS = 30.0

credits_app = typer.Typer(
    help="Credits (R16): grants applied to invoices, soonest-expiring first.", no_args_is_help=True
)
invoices_app = typer.Typer(help="Invoices (R17-R23): list, show, close a billing period.", no_args_is_help=True)
payments_app = typer.Typer(help="Payments (R18): the processor's outcome for an invoice.", no_args_is_help=True)

_TRIGGER_TEXT = {
    bpb.INVOICE_TRIGGER_THRESHOLD: "R17: uninvoiced usage after discounts exceeded $50.00",
    bpb.INVOICE_TRIGGER_MONTH_END: "R17: end of the calendar month (UTC)",
}
_CADENCE_TEXT = {
    apb.INVOICE_CADENCE_THRESHOLD_OR_MONTH_END: "R17: $50.00 threshold or month end",
    apb.INVOICE_CADENCE_MONTHLY: "R18: monthly, after consecutive paid invoices",
}
_STATUS_TEXT = {
    bpb.PAYMENT_STATUS_NOT_DUE: "NOT DUE",
    bpb.PAYMENT_STATUS_PENDING: "PENDING",
    bpb.PAYMENT_STATUS_PAID: "PAID",
    bpb.PAYMENT_STATUS_FAILED: "FAILED",
}


# -- shared helpers -------------------------------------------------------------------------------------------------


def parse_time(text: str | None, option: str, as_json: bool) -> int | None:
    """An optional time option, in the one grammar every command accepts (docs/cli.md); bad is exit 2."""
    return None if text is None else instant_option(text, option, as_json)


def to_timestamp(micros: int) -> Timestamp:
    return micros_to_timestamp(micros)


def dollars(amount: str) -> str:
    """`$12.30`, `-$0.05`; exact figures finer than a cent (hourly spend, R15) keep their digits: `$10.0872`."""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        return amount
    value = abs(value) if value == 0 else value
    exponent = value.as_tuple().exponent
    text = f"{value:.2f}" if isinstance(exponent, int) and exponent >= -2 else f"{value:f}"
    return f"-${text[1:]}" if text.startswith("-") else f"${text}"


@contextmanager
def connect(target: str, as_json: bool) -> Iterator[LedgerClient]:
    """A client of the ledger (with --api-key and TLS as given); RPC failures become ledgerctl's exit codes."""
    with LedgerClient(target) as client:
        try:
            yield client
        except grpc.RpcError as err:
            rpc_failure(err, target, as_json)


def call(client: LedgerClient, method: Callable[..., T], request: Any) -> T:
    return method(request, timeout=TIMEOUT_SECONDS, metadata=client.metadata)


def billing_stub(client: LedgerClient) -> bpb_grpc.BillingServiceStub:
    return bpb_grpc.BillingServiceStub(client.channel)


# -- JSON shapes ----------------------------------------------------------------------------------------------------


def credit_json(credit: bpb.Credit) -> dict[str, Any]:
    return {
        "sequence": credit.sequence,
        "amount": credit.amount,
        "used": credit.used,
        "left": credit.left,
        "reason": credit.reason,
        "granted_at": when(credit.grant_time),
        "expires_at": when(credit.expire_time) if credit.HasField("expire_time") else None,
        "expired": credit.expired,
        "request_id": credit.request_id,
        "currency": credit.currency_code,
    }


def line_json(line: bpb.InvoiceLine) -> dict[str, Any]:
    return {
        "kind": bpb.InvoiceLineKind.Name(line.kind).removeprefix("INVOICE_LINE_KIND_"),
        "description": line.description,
        "rule": line.rule,
        "quantity": line.quantity,
        "unit": line.unit,
        "unit_price": line.unit_price,
        "price_unit": line.price_unit,
        "quantity_divisor": line.quantity_divisor,
        "amount": line.amount,
        "late": line.late,
        "reversal": line.reversal,
        "usage_period": (
            {"start": when(line.usage_start_time), "end": when(line.usage_end_time)}
            if line.HasField("usage_start_time")
            else None
        ),
        "endpoint_id": line.endpoint_id or None,
        "workload_kind": line.workload_kind or None,
        "instance_type": line.instance_type or None,
        "worker_type": line.worker_type or None,
        "storage_kind": line.storage_kind or None,
        "volume_id": line.volume_id or None,
        "reference": line.reference or None,
    }


def invoice_json(invoice: bpb.Invoice, *, full: bool) -> dict[str, Any]:
    result: dict[str, Any] = {
        "org_id": invoice.org_id,
        "number": invoice.number,
        "entry": {"log_id": invoice.log_id, "sequence": invoice.sequence, "entry_hash": invoice.entry_hash.hex()},
        "period": {"start": when(invoice.period_start_time), "end": when(invoice.period_end_time)},
        "trigger": bpb.InvoiceTrigger.Name(invoice.trigger).removeprefix("INVOICE_TRIGGER_"),
        "cadence": apb.InvoiceCadence.Name(invoice.cadence).removeprefix("INVOICE_CADENCE_"),
        "subtotal": invoice.subtotal,
        "discount_percent": invoice.discount_percent,
        "discount": invoice.discount,
        "total": invoice.total,
        "credits_applied": [
            {"credit_sequence": c.credit_sequence, "amount": c.amount} for c in invoice.credits_applied
        ],
        "credits_total": invoice.credits_total,
        "amount_due": invoice.amount_due,
        "balance_carried_forward": invoice.balance_carried_forward,
        "payment_status": bpb.PaymentStatus.Name(invoice.payment_status).removeprefix("PAYMENT_STATUS_"),
        "payment_reference": invoice.payment_reference or None,
        "late_lines": invoice.late_line_count,
        "currency": invoice.currency_code,
        # R17/R28: the cut is period.end; the settled-through time it was cut on, and the grace if it fired.
        "cut": when(invoice.period_end_time),
        "settled_through": when(invoice.settled_through_time) if invoice.HasField("settled_through_time") else None,
        "issued_at": when(invoice.issue_time) if invoice.HasField("issue_time") else None,
        "grace": (
            {
                "fired": True,
                "wall_clock": when(invoice.grace.wall_clock_time),
                "grace_seconds": invoice.grace.grace_seconds,
            }
            if invoice.grace.fired
            else {"fired": False}
        ),
        "rated_log_size": invoice.rated_log_size,
    }
    if full:
        result["lines"] = [line_json(line) for line in invoice.lines]
        result["covers"] = {
            "sessions": [
                {
                    "workload_id": s.workload_id,
                    "up_seq": s.up_sequence,
                    "from": s.first_unit_index,
                    "to": s.end_unit_index,
                    "reversal": s.reversal,
                    "unit_seconds": s.unit_seconds,
                    "priced": [
                        {
                            "from": p.first_unit_index,
                            "to": p.end_unit_index,
                            "unit_price": p.unit_price,
                            "price_version": p.price_version,
                        }
                        for p in s.priced
                    ],
                }
                for s in invoice.covered_sessions
            ],
            "storage_sequences": list(invoice.covered_storage_sequences),
            "adjustment_sequences": list(invoice.covered_adjustment_sequences),
            "carried_from_invoice": invoice.carried_from_invoice or None,
        }
    return result


# -- credits ----------------------------------------------------------------------------------------------------------


@credits_app.command("grant")
def credits_grant(
    org: OrgOption,
    amount: Annotated[str, typer.Option("--amount", help="USD, at most two decimals (25.00).")],
    reason: Annotated[str, typer.Option("--reason", help="Why the credit is granted.")],
    expires: Annotated[
        str | None, typer.Option("--expires", help="Expiry, " + TIME_HELP + " (default: never).")
    ] = None,
    request_id: Annotated[
        str | None, typer.Option("--request-id", help="Idempotency key: a retry with the same key grants once.")
    ] = None,
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
) -> None:
    """Grant ORG a credit (R16): applied to invoices after discounts, soonest-expiring first."""
    expires_at = parse_time(expires, "--expires", as_json)
    request = bpb.GrantCreditRequest(
        org_id=org, amount=amount, reason=reason, request_id=request_id or uuid.uuid4().hex
    )
    if expires_at is not None:
        request.expire_time.CopyFrom(to_timestamp(expires_at))
    with connect(target, as_json) as client:
        response = call(client, billing_stub(client).GrantCredit, request)
    credit = response.credit
    if as_json:
        emit_json({"ok": True, "duplicate": response.duplicate, "credit": credit_json(credit)})
        return
    expiry = f", expires {when(credit.expire_time)}" if credit.HasField("expire_time") else ", never expires"
    already = " (already granted: nothing new appended)" if response.duplicate else ""
    out.print(
        f"R16: granted {dollars(credit.amount)} to {org} (entry org/{org}#{credit.sequence}){expiry}: "
        f"{credit.reason}{already}"
    )


@credits_app.command("list")
def credits_list(org: OrgOption, target: Target = DEFAULT_TARGET, as_json: JsonFlag = False) -> None:
    """List ORG's credits: granted, used by invoices, left, expiry (R16)."""
    credits: list[bpb.Credit] = []
    token = ""
    with connect(target, as_json) as client:
        while True:
            response = call(
                client,
                billing_stub(client).ListCredits,
                bpb.ListCreditsRequest(org_id=org, page_size=500, page_token=token),
            )
            credits.extend(response.credits)
            token = response.next_page_token
            if not token:
                break
    if as_json:
        emit_json({"org_id": org, "credit_left": response.credit_left, "credits": [credit_json(c) for c in credits]})
        return
    table = Table("entry", "granted", "used", "left", "expires", "status", "reason", title=f"credits of {org} (R16)")
    for credit in credits:
        status = "expired" if credit.expired else "used up" if credit.left == "0.00" else "available"
        expiry = when(credit.expire_time) if credit.HasField("expire_time") else "never"
        table.add_row(
            f"#{credit.sequence}",
            dollars(credit.amount),
            dollars(credit.used),
            dollars(credit.left),
            expiry,
            status,
            credit.reason,
        )
    out.print(table)
    out.print(f"credit left for the next invoice: {dollars(response.credit_left)} (R16: expired credit is not used)")


# -- invoices --------------------------------------------------------------------------------------------------------


@invoices_app.command("list")
def invoices_list(
    org: OrgOption, target: Target = DEFAULT_TARGET, as_json: JsonFlag = False, format_name: FormatOption = "text"
) -> None:
    """List ORG's issued invoices, oldest first; with --format csv, one row per invoice, figures in cents."""
    output = chosen_format(format_name, as_json)
    as_json = output == "json"
    invoices: list[bpb.Invoice] = []
    token = ""
    with connect(target, as_json) as client:
        while True:
            response = call(
                client,
                billing_stub(client).ListInvoices,
                bpb.ListInvoicesRequest(org_id=org, page_size=500, page_token=token),
            )
            invoices.extend(response.invoices)
            token = response.next_page_token
            if not token:
                break
    if as_json:
        emit_json({"org_id": org, "invoices": [invoice_json(inv, full=False) for inv in invoices]})
        return
    if output == "csv":
        emit_csv(INVOICE_COLUMNS, invoice_rows(invoice_json(inv, full=False) for inv in invoices))
        return
    table = Table(
        "#", "period (to the cut)", "settled through", "trigger", "total", "credits", "amount due", "payment",
        "late lines", title=org,
    )  # fmt: skip
    for inv in invoices:
        table.add_row(
            str(inv.number),
            f"{when(inv.period_start_time)} to {when(inv.period_end_time)}",
            _settled_text(inv),
            bpb.InvoiceTrigger.Name(inv.trigger).removeprefix("INVOICE_TRIGGER_"),
            dollars(inv.total),
            dollars(inv.credits_total),
            dollars(inv.amount_due),
            _STATUS_TEXT.get(inv.payment_status, "?"),
            str(inv.late_line_count),
        )
    out.print(table)
    if not invoices:
        out.print(f"no invoices for {org} yet (R17: issued over $50.00 of usage or at month end)")


def _settled_text(inv: bpb.Invoice) -> str:
    """R28's settled-through time the invoice was cut on, and R17's grace when it fired."""
    settled = when(inv.settled_through_time) if inv.HasField("settled_through_time") else "-"
    if inv.grace.fired:
        settled += f" (grace {inv.grace.grace_seconds} s fired at {when(inv.grace.wall_clock_time)})"
    return settled


def _statement(inv: bpb.Invoice) -> None:
    """The readable statement: every figure with the rule behind it."""
    entry = f"entry {inv.log_id}#{inv.sequence}, hash {inv.entry_hash.hex()[:16]}…"
    out.print(f"[bold]Invoice #{inv.number}[/] for org {inv.org_id}  ({entry})")
    out.print(f"Period     {when(inv.period_start_time)} to {when(inv.period_end_time)} (R17: cut at the end)")
    out.print(f"Settled    {_settled_text(inv)} (R28: every session's usage before it was in the log)")
    out.print(f"Issued by  {_TRIGGER_TEXT.get(inv.trigger, '?')} (cadence {_CADENCE_TEXT.get(inv.cadence, '?')})")
    reference = f" ({inv.payment_reference})" if inv.payment_reference else ""
    out.print(f"Payment    {_STATUS_TEXT.get(inv.payment_status, '?')}{reference}")
    table = Table("line", "description", "quantity", "unit price", "amount", "rule")
    for number, line in enumerate(inv.lines, start=1):
        unit = f"{line.quantity} {line.unit}"
        price = f"{dollars(line.unit_price)}/{line.price_unit}"
        description = line.description
        if line.late:
            description = (
                f"[yellow]LATE ({when(line.usage_start_time)} to {when(line.usage_end_time)})[/] " + description
            )
        table.add_row(str(number), description, unit, price, dollars(line.amount), line.rule)
    out.print(table)
    figures = Table.grid(padding=(0, 2))
    figures.add_column()
    figures.add_column(justify="right")
    figures.add_row("Subtotal (R21: sum of the usage lines, each rounded half-up to cents)", dollars(inv.subtotal))
    figures.add_row(
        f"Discount (R20: {inv.discount_percent}% of the subtotal, before credits)",
        dollars(str(-Decimal(inv.discount))),
    )
    figures.add_row("Total (R21: the sum of all lines, adjustments R23 included)", dollars(inv.total))
    for credit in inv.credits_applied:
        figures.add_row(
            f"  Credit entry #{credit.credit_sequence} (R16: soonest-expiring first)",
            dollars(str(-Decimal(credit.amount))),
        )
    figures.add_row("Credits applied (R16)", dollars(str(-Decimal(inv.credits_total))))
    figures.add_row("[bold]Amount due[/] (R16: never below zero)", f"[bold]{dollars(inv.amount_due)}[/]")
    if inv.balance_carried_forward != "0.00":
        figures.add_row("Carried to the next invoice (R16/R23)", dollars(inv.balance_carried_forward))
    out.print(figures)
    if inv.late_line_count:
        out.print(f"{inv.late_line_count} late line(s) (R22): usage from an already-invoiced period, billed now")
    out.print(
        f"Covers (R17): {len(inv.covered_sessions)} session unit range(s), {len(inv.covered_storage_sequences)} "
        f"storage charge(s), {len(inv.covered_adjustment_sequences)} adjustment(s); --json lists them exactly"
    )


def _latest_invoice_number(client: LedgerClient, org: str) -> int | None:
    latest = None
    token = ""
    while True:
        page = call(
            client,
            billing_stub(client).ListInvoices,
            bpb.ListInvoicesRequest(org_id=org, page_size=1000, page_token=token),
        )
        if page.invoices:
            latest = int(page.invoices[-1].number)
        token = page.next_page_token
        if not token:
            return latest


@invoices_app.command("show")
def invoices_show(
    org: OrgOption,
    invoice: Annotated[
        int | None, typer.Option("--invoice", min=1, help="Invoice number (default: the latest).")
    ] = None,
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
    format_name: FormatOption = "text",
) -> None:
    """Show one invoice as a statement: period, lines, subtotal, discount, credits, amount due, late lines; with
    --format csv, one row per line."""
    output = chosen_format(format_name, as_json)
    as_json = output == "json"
    with connect(target, as_json) as client:
        stub = billing_stub(client)
        number = invoice
        if number is None:
            number = _latest_invoice_number(client, org)
            if number is None:
                fail(f"org {org} has no invoices yet", EXIT_REFUSED, as_json=as_json)
        found = call(client, stub.GetInvoice, bpb.GetInvoiceRequest(org_id=org, number=number)).invoice
    if as_json:
        emit_json(invoice_json(found, full=True))
    elif output == "csv":
        emit_csv(INVOICE_LINE_COLUMNS, invoice_line_rows(invoice_json(found, full=True)))
    else:
        _statement(found)


@invoices_app.command("close")
def invoices_close(
    org: OrgOption,
    at: Annotated[
        str | None, typer.Option("--at", help="The instant to close at, " + TIME_HELP + " (default: now).")
    ] = None,
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
) -> None:
    """Close ORG's billing period at --at: month-end invoices, then the $50.00 threshold (R17, R18). Idempotent."""
    instant = parse_time(at, "--at", as_json)
    request = bpb.CloseBillingPeriodRequest(org_id=org)
    if instant is not None:
        request.close_time.CopyFrom(to_timestamp(instant))
    with connect(target, as_json) as client:
        response = call(client, billing_stub(client).CloseBillingPeriod, request)
    if as_json:
        emit_json(
            {
                "ok": True,
                "issued": [invoice_json(inv, full=False) for inv in response.issued],
                "explanation": response.explanation,
                "cadence": apb.InvoiceCadence.Name(response.cadence).removeprefix("INVOICE_CADENCE_"),
            }
        )
        return
    for inv in response.issued:
        out.print(
            f"issued invoice #{inv.number} ({when(inv.period_start_time)} to {when(inv.period_end_time)}): "
            f"total {dollars(inv.total)}, amount due {dollars(inv.amount_due)}"
        )
    if not response.issued:
        out.print("no invoice issued")
    out.print(response.explanation)


# -- payments --------------------------------------------------------------------------------------------------------


@payments_app.command("record")
def payments_record(
    org: OrgOption,
    invoice: Annotated[int, typer.Option("--invoice", min=1, help="Invoice number.")],
    outcome: Annotated[str, typer.Option("--outcome", help="succeeded or failed.")],
    reference: Annotated[str, typer.Option("--reference", help="The processor's opaque reference (ch_…, pi_…).")],
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
) -> None:
    """Record the payment processor's outcome for an invoice (R18); the reference is recorded once."""
    outcomes = {"succeeded": bpb.PAYMENT_OUTCOME_SUCCEEDED, "failed": bpb.PAYMENT_OUTCOME_FAILED}
    if outcome.lower() not in outcomes:
        fail(f"--outcome must be succeeded or failed, not {outcome!r}", EXIT_USAGE, as_json=as_json)
    request = bpb.RecordPaymentRequest(
        org_id=org, invoice_number=invoice, outcome=outcomes[outcome.lower()], reference=reference
    )
    with connect(target, as_json) as client:
        response = call(client, billing_stub(client).RecordPayment, request)
    status = bpb.PaymentStatus.Name(response.payment_status).removeprefix("PAYMENT_STATUS_")
    cadence = apb.InvoiceCadence.Name(response.cadence).removeprefix("INVOICE_CADENCE_")
    if as_json:
        emit_json(
            {
                "ok": True,
                "duplicate": response.duplicate,
                "sequence": response.payment.sequence,
                "invoice": response.payment.invoice_number,
                "outcome": bpb.PaymentOutcome.Name(response.payment.outcome).removeprefix("PAYMENT_OUTCOME_"),
                "amount": response.payment.amount,
                "payment_status": status,
                "cadence": cadence,
            }
        )
        return
    already = " (already recorded: nothing new appended)" if response.duplicate else ""
    out.print(
        f"R18: invoice #{invoice} of {org}: {outcome.lower()} for {dollars(response.payment.amount)} "
        f"(entry org/{org}#{response.payment.sequence}){already}; invoice is {status}; "
        f"cadence {_CADENCE_TEXT.get(response.cadence, cadence)}"
    )
