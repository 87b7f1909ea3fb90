"""AccountService: settings (R10, R15, R18, R20), state and its live stream (R15, R19), the payment method (R19)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
from usageledger.v1 import account_pb2 as apb
from usageledger.v1 import account_pb2_grpc as apb_grpc

from ledger.account import AccountSettings
from ledger.billing.account_state import AccountState, AccountStatus, StateChange
from ledger.billing.cents import CURRENCY, cents_text, money_text
from ledger.billing.engine import AccountSummary, BillingEngine
from ledger.errors import FieldViolation, InvalidInput, LedgerError
from ledger.events import IDENTIFIER_RE, IDENTIFIER_RULE, format_decimal
from ledger.intake import Ledger
from ledger.orgs import require_org
from ledger.plans import Granularity
from ledger.timeutil import format_micros
from server.billing_service import cadence_to_proto, engine_for, wake_billing
from server.errors import abort
from wire.convert import micros_to_timestamp, timestamp_to_micros

# How often a watch stream checks that its client is still there while no change arrives.
WATCH_POLL_SECONDS = 0.25

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


def _check_org(org_id: str) -> None:
    if not IDENTIFIER_RE.match(org_id or ""):
        raise InvalidInput([FieldViolation("org_id", f"must be {IDENTIFIER_RULE}")])


class AccountServicer(apb_grpc.AccountServiceServicer):  # type: ignore[misc]
    def __init__(self, engine: BillingEngine) -> None:
        self.engine = engine
        self.ledger = engine.ledger

    def SetAccountSettings(
        self, request: apb.SetAccountSettingsRequest, context: grpc.ServicerContext
    ) -> apb.SetAccountSettingsResponse:
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
        try:
            change, appended = self.ledger.set_account(request.org_id, raw)
            settings = self.ledger.account_history(request.org_id).at(change.effective_from)
        except LedgerError as err:
            abort(context, err)
            raise
        wake_billing(self.ledger, [appended])  # a new spend limit can flip R15 at once
        return apb.SetAccountSettingsResponse(
            log_id=appended.log_id, sequence=appended.sequence, settings=settings_to_proto(settings)
        )

    def GetAccountSettings(
        self, request: apb.GetAccountSettingsRequest, context: grpc.ServicerContext
    ) -> apb.GetAccountSettingsResponse:
        try:
            _check_org(request.org_id)
            require_org(self.ledger.store, request.org_id)
            at = timestamp_to_micros(request.at_time) if request.HasField("at_time") else self.ledger.clock()
            settings = self.ledger.account_history(request.org_id).at(at)
        except LedgerError as err:
            abort(context, err)
            raise
        return apb.GetAccountSettingsResponse(settings=settings_to_proto(settings))

    def GetAccountState(
        self, request: apb.GetAccountStateRequest, context: grpc.ServicerContext
    ) -> apb.GetAccountStateResponse:
        try:
            _check_org(request.org_id)
            require_org(self.ledger.store, request.org_id)
            summary = self.engine.summary(request.org_id)
        except LedgerError as err:
            abort(context, err)
            raise
        return summary_to_proto(summary)

    def WatchAccountState(
        self, request: apb.WatchAccountStateRequest, context: grpc.ServicerContext
    ) -> Iterator[apb.WatchAccountStateResponse]:
        try:
            _check_org(request.org_id)
            require_org(self.ledger.store, request.org_id)
        except LedgerError as err:
            abort(context, err)
            raise
        # Subscribe before reading the log, so no change falls between the two; duplicates are skipped by sequence.
        with self.engine.hub.subscribe(request.org_id) as subscription:
            try:
                changes = self.engine.books(request.org_id).status.changes
            except LedgerError as err:
                abort(context, err)
                raise
            # First the changes from `start_sequence` on (each with the state it left), or, with nothing to replay,
            # the current state alone: either way the stream opens with where the account stands now.
            status = AccountStatus()
            last = -1
            replayed = 0
            for change in changes:
                status = status.with_change(change)
                last = change.sequence
                if request.HasField("start_sequence") and change.sequence >= request.start_sequence:
                    replayed += 1
                    yield apb.WatchAccountStateResponse(
                        state=state_to_proto(status.state), change=change_to_proto(change)
                    )
            if not replayed:
                yield apb.WatchAccountStateResponse(state=state_to_proto(status.state))
            while context.is_active() and not subscription.closed:
                live = subscription.get(WATCH_POLL_SECONDS)
                if live is None or live.sequence <= last:
                    continue
                status = status.with_change(live)
                last = live.sequence
                yield apb.WatchAccountStateResponse(state=state_to_proto(status.state), change=change_to_proto(live))

    def SetPaymentMethod(
        self, request: apb.SetPaymentMethodRequest, context: grpc.ServicerContext
    ) -> apb.SetPaymentMethodResponse:
        try:
            change = self.engine.set_payment_method(request.org_id, request.reference)
            state = self.engine.books(request.org_id).status.state
        except LedgerError as err:
            abort(context, err)
            raise
        response = apb.SetPaymentMethodResponse(changed=change is not None, state=state_to_proto(state))
        if change is not None:
            response.change.CopyFrom(change_to_proto(change))
        return response

    def ClearPaymentMethod(
        self, request: apb.ClearPaymentMethodRequest, context: grpc.ServicerContext
    ) -> apb.ClearPaymentMethodResponse:
        try:
            change = self.engine.clear_payment_method(request.org_id)
            state = self.engine.books(request.org_id).status.state
        except LedgerError as err:
            abort(context, err)
            raise
        response = apb.ClearPaymentMethodResponse(changed=change is not None, state=state_to_proto(state))
        if change is not None:
            response.change.CopyFrom(change_to_proto(change))
        return response


def register_account(ledger: Ledger, server: grpc.Server) -> str:
    apb_grpc.add_AccountServiceServicer_to_server(AccountServicer(engine_for(ledger)), server)
    return str(apb.DESCRIPTOR.services_by_name["AccountService"].full_name)
