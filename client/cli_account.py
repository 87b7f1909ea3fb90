"""`ledgerctl account`: settings (R10, R15, R18, R20), state (R15, R19) and the payment method on file (R19)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import grpc
import typer
from rich.table import Table
from usageledger.v1 import account_pb2 as apb
from usageledger.v1 import account_pb2_grpc as apb_grpc

from client.cli_billing import call, connect, dollars, parse_time, to_timestamp
from client.ledger_client import LedgerClient
from client.output import (
    DEFAULT_TARGET,
    EXIT_USAGE,
    TIME_HELP,
    JsonFlag,
    OrgOption,
    Target,
    emit_json,
    fail,
    out,
    rpc_failure,
    when,
)

account_app = typer.Typer(help="Org accounts: settings, state, payment method.", no_args_is_help=True)
payment_method_app = typer.Typer(
    help="The payment method on file: an opaque processor reference only (R19).", no_args_is_help=True
)
account_app.add_typer(payment_method_app, name="payment-method")

_GRANULARITY = {"PER_MINUTE": apb.GRANULARITY_PER_MINUTE, "PER_SECOND": apb.GRANULARITY_PER_SECOND}
_STATE_RULE = {
    apb.ACCOUNT_STATE_ACTIVE: "ACTIVE",
    apb.ACCOUNT_STATE_SPEND_LIMIT_EXCEEDED: "SPEND_LIMIT_EXCEEDED (R15)",
    apb.ACCOUNT_STATE_DEACTIVATED: "DEACTIVATED (R19)",
}


def account_stub(client: LedgerClient) -> apb_grpc.AccountServiceStub:
    return apb_grpc.AccountServiceStub(client.channel)


def state_name(state: int) -> str:
    return str(apb.AccountState.Name(state)).removeprefix("ACCOUNT_STATE_")


def change_json(change: apb.AccountStateChange) -> dict[str, Any]:
    return {
        "sequence": change.sequence,
        "change": apb.AccountStateChangeType.Name(change.type).removeprefix("ACCOUNT_STATE_CHANGE_TYPE_"),
        "at": when(change.change_time),
        "rule": change.rule,
        "explanation": change.explanation,
        "figures": dict(change.figures),
    }


def settings_json(settings: apb.AccountSettings) -> dict[str, Any]:
    return {
        "granularity": apb.Granularity.Name(settings.granularity).removeprefix("GRANULARITY_"),
        "discount_percent": settings.discount_percent,
        "spend_limit_per_hour": settings.spend_limit_per_hour,
        "monthly_after_paid_invoices": settings.monthly_after_paid_invoices,
    }


@account_app.command("set")
def account_set(
    org: OrgOption,
    granularity: Annotated[
        str | None, typer.Option("--granularity", help="R10: PER_MINUTE or PER_SECOND billing units.")
    ] = None,
    discount_percent: Annotated[
        str | None, typer.Option("--discount-percent", help="R20: percentage off the usage subtotal (0-100).")
    ] = None,
    spend_limit: Annotated[str | None, typer.Option("--spend-limit", help="R15: USD per hour (default 80.00).")] = None,
    monthly_after: Annotated[
        int | None,
        typer.Option("--monthly-after", min=1, max=1000, help="R18: paid invoices before monthly cadence (default 3)."),
    ] = None,
    effective_from: Annotated[
        str | None,
        typer.Option("--effective-from", help="When the change takes effect, " + TIME_HELP + " (default: now)."),
    ] = None,
    note: Annotated[str, typer.Option("--note", help="Why (kept in the ACCOUNT entry).")] = "",
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
) -> None:
    """Change ORG's settings from --effective-from; settings not named stay as they are."""
    if granularity is None and discount_percent is None and spend_limit is None and monthly_after is None:
        fail(
            "name at least one setting: --granularity, --discount-percent, --spend-limit or --monthly-after",
            EXIT_USAGE,
            as_json=as_json,
        )
    request = apb.SetAccountSettingsRequest(org_id=org, note=note)
    if granularity is not None:
        if granularity.upper() not in _GRANULARITY:
            fail(
                f"--granularity must be PER_MINUTE or PER_SECOND (R10), not {granularity!r}",
                EXIT_USAGE,
                as_json=as_json,
            )
        request.granularity = _GRANULARITY[granularity.upper()]
    request.discount_percent = discount_percent or ""
    request.spend_limit_per_hour = spend_limit or ""
    request.monthly_after_paid_invoices = monthly_after or 0
    instant = parse_time(effective_from, "--effective-from", as_json)
    if instant is not None:
        request.effective_time.CopyFrom(to_timestamp(instant))
    with connect(target, as_json) as client:
        response = call(client, account_stub(client).SetAccountSettings, request)
    settings = settings_json(response.settings)
    if as_json:
        emit_json({"ok": True, "log_id": response.log_id, "sequence": response.sequence, "settings": settings})
        return
    out.print(
        f"{org}: settings recorded as entry {response.log_id}#{response.sequence}; in force from then: "
        f"granularity {settings['granularity']} (R10), discount {settings['discount_percent']}% (R20), "
        f"spend limit {dollars(settings['spend_limit_per_hour'])}/hour (R15), monthly cadence after "
        f"{settings['monthly_after_paid_invoices']} paid invoices (R18)"
    )


@account_app.command("show")
def account_show(org: OrgOption, target: Target = DEFAULT_TARGET, as_json: JsonFlag = False) -> None:
    """Show ORG's state, credit left, the open period's running total, the last hour's spend and payment method."""
    with connect(target, as_json) as client:
        state = call(client, account_stub(client).GetAccountState, apb.GetAccountStateRequest(org_id=org))
    cadence = apb.InvoiceCadence.Name(state.cadence).removeprefix("INVOICE_CADENCE_")
    if as_json:
        emit_json(
            {
                "org_id": state.org_id,
                "state": state_name(state.state),
                "spend_limit_exceeded": state.spend_limit_exceeded,
                "deactivated": state.deactivated,
                "payment_method_on_file": state.payment_method_on_file,
                "credit_left": state.credit_left,
                "open_period": {
                    "start": when(state.open_period_start_time),
                    "total": state.open_period_total,
                    "amount_due_after_credits": state.open_period_amount_due,
                },
                "hourly_spend": state.hourly_spend,
                "spend_limit_per_hour": state.spend_limit_per_hour,
                "unpaid_amount_due": state.unpaid_amount_due,
                "cadence": cadence,
                "discount_percent": state.discount_percent,
                "as_of": when(state.as_of_time),
                "settled_through": when(state.settled_through_time) if state.HasField("settled_through_time") else None,
                "last_change": change_json(state.last_change) if state.HasField("last_change") else None,
            }
        )
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("org", state.org_id)
    table.add_row("state", _STATE_RULE.get(state.state, state_name(state.state)))
    table.add_row("credit left", f"{dollars(state.credit_left)} (R16)")
    table.add_row(
        "open period",
        f"since {when(state.open_period_start_time)}: {dollars(state.open_period_total)} after a "
        f"{state.discount_percent}% discount (R17, R20), {dollars(state.open_period_amount_due)} after credits",
    )
    table.add_row(
        "last hour", f"{dollars(state.hourly_spend)} of a {dollars(state.spend_limit_per_hour)}/hour limit (R15)"
    )
    table.add_row(
        "payment method", "yes (opaque reference on file, R19)" if state.payment_method_on_file else "no (R19)"
    )
    table.add_row("unpaid invoices", dollars(state.unpaid_amount_due))
    table.add_row("cadence", cadence + (" (R18)" if cadence == "MONTHLY" else " (R17)"))
    if state.HasField("last_change"):
        table.add_row("last change", f"{when(state.last_change.change_time)}: {state.last_change.explanation}")
    table.add_row("as of", when(state.as_of_time))
    settled = when(state.settled_through_time) if state.HasField("settled_through_time") else "no usage yet"
    table.add_row("settled through", f"{settled} (R28: every session's usage before it is in the log)")
    out.print(table)


@account_app.command("watch")
def account_watch(
    org: OrgOption,
    start: Annotated[
        int | None,
        typer.Option("--from", min=0, help="Replay STATE entries from this sequence number first (0: all)."),
    ] = None,
    count: Annotated[int | None, typer.Option("--count", min=1, help="Stop after this many messages.")] = None,
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
) -> None:
    """Print ORG's state, then each state change as it happens (R15, R19), until interrupted."""
    request = apb.WatchAccountStateRequest(org_id=org)
    if start is not None:
        request.start_sequence = start
    seen = 0
    with connect(target, as_json) as client:
        stream = account_stub(client).WatchAccountState(request, metadata=client.metadata)
        try:
            for message in stream:
                record: dict[str, Any] = {"state": state_name(message.state)}
                if message.HasField("change"):
                    record["change"] = change_json(message.change)
                if as_json:
                    sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
                    sys.stdout.flush()
                elif message.HasField("change"):
                    out.print(f"{when(message.change.change_time)} {record['state']}: {message.change.explanation}")
                else:
                    out.print(f"{org} is {record['state']}; watching for changes")
                seen += 1
                if count is not None and seen >= count:
                    stream.cancel()
                    return
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                rpc_failure(err, target, as_json)
        except KeyboardInterrupt:
            stream.cancel()


@payment_method_app.command("set")
def payment_method_set(
    org: OrgOption,
    reference: Annotated[str, typer.Option("--reference", help="The processor's opaque reference, e.g. pm_1Nq…")],
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
) -> None:
    """Put ORG's payment method on file (R19: only an opaque reference; card numbers are refused)."""
    with connect(target, as_json) as client:
        response = call(
            client, account_stub(client).SetPaymentMethod, apb.SetPaymentMethodRequest(org_id=org, reference=reference)
        )
    _print_method_change(org, response.changed, response.state, response.change if response.changed else None, as_json)


@payment_method_app.command("clear")
def payment_method_clear(org: OrgOption, target: Target = DEFAULT_TARGET, as_json: JsonFlag = False) -> None:
    """Remove ORG's payment method (R19: without one, credits must cover usage)."""
    with connect(target, as_json) as client:
        response = call(client, account_stub(client).ClearPaymentMethod, apb.ClearPaymentMethodRequest(org_id=org))
    _print_method_change(org, response.changed, response.state, response.change if response.changed else None, as_json)


def _print_method_change(
    org: str, changed: bool, state: int, change: apb.AccountStateChange | None, as_json: bool
) -> None:
    if as_json:
        emit_json(
            {
                "ok": True,
                "changed": changed,
                "state": state_name(state),
                "change": change_json(change) if change is not None else None,
            }
        )
        return
    what = change.explanation if change is not None else "nothing changed (already so)"
    out.print(f"{org}: {what}; state {_STATE_RULE.get(state, state_name(state))}")
