"""The one place where domain errors become gRPC statuses with google.rpc error details (AIP-193)."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ledger.errors import EventConflict, InvalidInput, LedgerError, NotFound, StorageError, VerificationError
from ledger.metrics import record_verification_failure

DOMAIN = "usageledger.v1"

_CODES: list[tuple[type[LedgerError], int]] = [
    (InvalidInput, code_pb2.INVALID_ARGUMENT),
    (EventConflict, code_pb2.ALREADY_EXISTS),
    (NotFound, code_pb2.NOT_FOUND),
    (VerificationError, code_pb2.DATA_LOSS),
    (StorageError, code_pb2.UNAVAILABLE),
]


def to_status(err: LedgerError) -> grpc.Status:
    code = next((c for kind, c in _CODES if isinstance(err, kind)), code_pb2.FAILED_PRECONDITION)
    details = []
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN)
    if isinstance(err, EventConflict):
        info.metadata["org_id"] = err.org_id
        info.metadata["event_id"] = err.event_id
    details.append(info)
    if isinstance(err, InvalidInput):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in err.violations
            ]
        )
        details.append(bad_request)
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    return rpc_status.to_status(status_pb2.Status(code=code, message=str(err), details=packed))


def abort(context: grpc.ServicerContext, err: LedgerError) -> None:
    if isinstance(err, VerificationError):
        record_verification_failure(err.kind)  # something stored did not verify: operators alert on this
    context.abort_with_status(to_status(err))
