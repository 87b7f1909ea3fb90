"""The one place a call's error is answered: handlers raise, and this turns what escapes into its status (#23, #24).

A LedgerError raised on purpose becomes its status through wire.status (ErrorInfo, BadRequest); a
VerificationError is also counted, since something stored did not verify and operators alert on that.

grpcio answers a handler's uncaught exception UNKNOWN with "Exception calling application: <the error>", which
for a database failure is driver text (SQL and parameter values included) and for a client is a status it cannot
act on. Here a storage fault anywhere below (a store read outside the translated append path, a key lookup, a
billing read) becomes UNAVAILABLE through storage.sql.faults, retryable; any other unexpected error becomes
INTERNAL with a fixed message and an incident id, its traceback in the server's log under the same id.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from ledger.errors import LedgerError, VerificationError
from ledger.metrics import record_verification_failure
from storage.sql.faults import storage_fault
from wire.status import internal_status, to_status

log = logging.getLogger("usageledger.server")
Behavior = Callable[[Any, grpc.ServicerContext], Any]


def contained(behavior: Behavior, response_streaming: bool) -> Behavior:
    """`behavior` with every exception it lets escape answered as a proper status (see the module docstring)."""
    if response_streaming:

        def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from behavior(request, context)
            except Exception as err:
                _answer(err, context)
                raise

        return streaming

    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behavior(request, context)
        except Exception as err:
            _answer(err, context)
            raise

    return unary


def _already_answered(context: grpc.ServicerContext) -> bool:
    # context.abort() raises a bare Exception after setting the call's code; that answer stands.
    code = context.code()
    return code is not None and code != grpc.StatusCode.OK


def _answer(err: Exception, context: grpc.ServicerContext) -> None:
    """Abort the call for `err` unless the handler already answered it (then re-raising `err` is grpcio's cue)."""
    if _already_answered(context):
        return
    if isinstance(err, LedgerError):  # raised on purpose, by a handler or an interceptor's read
        if isinstance(err, VerificationError):
            record_verification_failure(err.kind)  # something stored did not verify: operators alert on this
        context.abort_with_status(to_status(err))
    fault = storage_fault(err)
    if fault is not None:
        log.warning("storage fault %s: %s: %s", fault.fault, type(err).__name__, err, exc_info=err)
        context.abort_with_status(to_status(fault))
    incident = uuid.uuid4().hex[:12]
    log.error("internal error (incident %s)", incident, exc_info=err)
    context.abort_with_status(internal_status(incident))
