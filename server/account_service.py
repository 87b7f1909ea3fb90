"""AccountService: settings (R10, R15, R18, R20), state and its live stream (R15, R19), the payment method (R19)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from usageledger.v1 import account_pb2 as apb
from usageledger.v1 import account_pb2_grpc as apb_grpc

from ledger.billing.account_state import AccountStatus
from ledger.billing.engine import BillingEngine
from ledger.errors import FieldViolation, InvalidInput
from ledger.events import IDENTIFIER_RE, IDENTIFIER_RULE
from ledger.orgs import require_org
from server.composition import Billing
from wire.account import change_to_proto, settings_request_to_raw, settings_to_proto, state_to_proto, summary_to_proto
from wire.convert import timestamp_to_micros

# How often a watch stream checks that its client is still there while no change arrives.
WATCH_POLL_SECONDS = 0.25


def _check_org(org_id: str) -> None:
    if not IDENTIFIER_RE.match(org_id or ""):
        raise InvalidInput([FieldViolation("org_id", f"must be {IDENTIFIER_RULE}")])


class AccountServicer(apb_grpc.AccountServiceServicer):  # type: ignore[misc]
    def __init__(self, billing: Billing) -> None:
        self.billing = billing
        self.engine: BillingEngine = billing.engine
        self.ledger = billing.engine.ledger

    def SetAccountSettings(
        self, request: apb.SetAccountSettingsRequest, context: grpc.ServicerContext
    ) -> apb.SetAccountSettingsResponse:
        change, appended = self.ledger.set_account(request.org_id, settings_request_to_raw(request))
        settings = self.ledger.account_history(request.org_id).at(change.effective_from)
        self.billing.wake([appended])  # a new spend limit can flip R15 at once
        return apb.SetAccountSettingsResponse(
            log_id=appended.log_id, sequence=appended.sequence, settings=settings_to_proto(settings)
        )

    def GetAccountSettings(
        self, request: apb.GetAccountSettingsRequest, context: grpc.ServicerContext
    ) -> apb.GetAccountSettingsResponse:
        _check_org(request.org_id)
        require_org(self.ledger.store, request.org_id)
        at = timestamp_to_micros(request.at_time) if request.HasField("at_time") else self.ledger.clock()
        settings = self.ledger.account_history(request.org_id).at(at)
        return apb.GetAccountSettingsResponse(settings=settings_to_proto(settings))

    def GetAccountState(
        self, request: apb.GetAccountStateRequest, context: grpc.ServicerContext
    ) -> apb.GetAccountStateResponse:
        _check_org(request.org_id)
        require_org(self.ledger.store, request.org_id)
        summary = self.engine.summary(request.org_id)
        return summary_to_proto(summary)

    def WatchAccountState(
        self, request: apb.WatchAccountStateRequest, context: grpc.ServicerContext
    ) -> Iterator[apb.WatchAccountStateResponse]:
        _check_org(request.org_id)
        require_org(self.ledger.store, request.org_id)
        # Subscribe before reading the log, so no change falls between the two; duplicates are skipped by sequence.
        with self.engine.hub.subscribe(request.org_id) as subscription:
            changes = self.engine.books(request.org_id).status.changes
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
        change = self.engine.set_payment_method(request.org_id, request.reference)
        state = self.engine.books(request.org_id).status.state
        response = apb.SetPaymentMethodResponse(changed=change is not None, state=state_to_proto(state))
        if change is not None:
            response.change.CopyFrom(change_to_proto(change))
        return response

    def ClearPaymentMethod(
        self, request: apb.ClearPaymentMethodRequest, context: grpc.ServicerContext
    ) -> apb.ClearPaymentMethodResponse:
        change = self.engine.clear_payment_method(request.org_id)
        state = self.engine.books(request.org_id).status.state
        response = apb.ClearPaymentMethodResponse(changed=change is not None, state=state_to_proto(state))
        if change is not None:
            response.change.CopyFrom(change_to_proto(change))
        return response
