"""AccountService's messages: settings (R10, R15, R18, R20), state and its changes (R15, R19), summaries."""

from __future__ import annotations

from typing import Any

from usageledger.v1 import account_pb2 as apb

from ledger.account import AccountSettings
from ledger.billing.account_state import AccountState, StateChange
from ledger.billing.cents import CURRENCY, cents_text, money_text
from ledger.billing.engine import AccountSummary
from ledger.events import format_decimal
from ledger.plans import Granularity
from ledger.timeutil import format_micros
from wire.billing import cadence_to_proto
from wire.convert import micros_to_timestamp, timestamp_to_micros

_GRANULARITY_FROM_PROTO = {
    apb.GRANULARITY_PER_MINUTE: Granularity.PER_MINUTE,
    apb.GRANULARITY_PER_SECOND: Granularity.PER_SECOND,
}
_GRANULARITY_TO_PROTO = {v: k for k, v in _GRANULARITY_FROM_PROTO.items()}


def settings_to_proto(settings: AccountSettings) -> apb.AccountSettings:
    return apb.AccountSettings(
        granularity=_GRANULARITY_TO_PROTO[settings.granularity],
        discount_percent=format_decimal(settings.discount_percent),
        spend_limit_per_hour=money_text(settings.spend_limit_per_hour),
        monthly_after_paid_invoices=settings.monthly_after_paid_invoices,
    )


def state_to_proto(state: AccountState) -> int:
    return int(apb.AccountState.Value("ACCOUNT_STATE_" + state.value))


def change_to_proto(change: StateChange) -> apb.AccountStateChange:
    return apb.AccountStateChange(
        org_id=change.org_id,
        sequence=change.sequence,
        type=apb.AccountStateChangeType.Value("ACCOUNT_STATE_CHANGE_TYPE_" + change.change.value),
        change_time=micros_to_timestamp(change.at),
        rule=change.rule,
        explanation=change.explanation,
        figures=dict(change.figures),
    )


def summary_to_proto(summary: AccountSummary) -> apb.GetAccountStateResponse:
    status = summary.status
    message = apb.GetAccountStateResponse(
        org_id=summary.org_id,
        state=state_to_proto(status.state),
        spend_limit_exceeded=status.spend_limit_exceeded,
        deactivated=status.deactivated,
        payment_method_on_file=status.payment_method is not None,
        payment_method_reference=status.payment_method or "",
        credit_left=cents_text(summary.credit_left),
        open_period_total=cents_text(summary.open_period.total),
        open_period_amount_due=cents_text(summary.open_period.amount_due),
        open_period_start_time=micros_to_timestamp(summary.open_period.period_start),
        hourly_spend=money_text(summary.hourly_spend),
        spend_limit_per_hour=money_text(summary.settings.spend_limit_per_hour),
        unpaid_amount_due=cents_text(summary.unpaid_amount_due),
        cadence=cadence_to_proto(summary.cadence),
        discount_percent=format_decimal(summary.settings.discount_percent),
        currency_code=CURRENCY,
        as_of_time=micros_to_timestamp(summary.as_of),
    )
    recorded = [change for change in status.changes if change.sequence >= 0]  # R19's due change is not an entry
    if recorded:
        message.last_change.CopyFrom(change_to_proto(recorded[-1]))
    if summary.settled_through is not None:
        message.settled_through_time.CopyFrom(micros_to_timestamp(summary.settled_through))
    return message


def settings_request_to_raw(request: apb.SetAccountSettingsRequest) -> dict[str, Any]:
    """The settings a request sets, as the billing-rules.md mapping ledger.account validates (unset: absent)."""
    raw: dict[str, Any] = {"note": request.note}
    if request.HasField("effective_time"):
        raw["effective_from"] = format_micros(timestamp_to_micros(request.effective_time))
    if request.granularity:
        granularity = _GRANULARITY_FROM_PROTO.get(request.granularity)
        raw["granularity"] = granularity.value if granularity is not None else f"<{request.granularity}>"
    if request.discount_percent:
        raw["discount_percent"] = request.discount_percent
    if request.spend_limit_per_hour:
        raw["spend_limit_per_hour"] = request.spend_limit_per_hour
    if request.monthly_after_paid_invoices:
        raw["monthly_after_paid_invoices"] = request.monthly_after_paid_invoices
    return raw
