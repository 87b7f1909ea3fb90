"""The one place where domain errors become gRPC statuses with google.rpc error details (AIP-193)."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ledger.errors import EventConflict, InvalidInput, LedgerError, NotFound, StorageError, VerificationError
from ledger.metrics import record_verification_failure
from storage.sql.faults import StorageFault

DOMAIN = "usageledger.v1"
# Every status is bounded whatever the request held (a 1 MB log_id is not echoed back): grpc sends the message and
# the details as trailing metadata, which clients refuse beyond 8 KiB by default, turning a clear INVALID_ARGUMENT
# into a RESOURCE_EXHAUSTED the client cannot explain.
MAX_MESSAGE_CHARS = 1000
MAX_FIELD_CHARS = 200
MAX_DESCRIPTION_CHARS = 300
MAX_VIOLATIONS = 10
MAX_METADATA_CHARS = 200

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
    # A stable UPPER_SNAKE reason per failure kind, and metadata naming the offending values (docs/errors.md).
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN)
    for key, value in _metadata(err).items():
        info.metadata[key] = bounded(value, MAX_METADATA_CHARS)
    details.append(info)
    if isinstance(err, InvalidInput):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=bounded(v.field, MAX_FIELD_CHARS), description=bounded(v.description, MAX_DESCRIPTION_CHARS)
                )
                for v in err.violations[:MAX_VIOLATIONS]
            ]
        )
        details.append(bad_request)
    message = bounded(str(err), MAX_MESSAGE_CHARS)
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=pack(details)))


def pack(details: list[Message]) -> list[any_pb2.Any]:
    """Error details as the `Any`s a google.rpc.Status carries."""
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    return packed


def _metadata(err: LedgerError) -> dict[str, str]:
    if isinstance(err, StorageFault):
        return {"fault": err.fault, **err.metadata}
    return dict(err.metadata)


def bounded(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    kept = max(0, limit - 40)  # room for the note
    return f"{text[:kept]}… ({len(text) - kept} more characters)"


def abort(context: grpc.ServicerContext, err: LedgerError) -> None:
    if isinstance(err, VerificationError):
        record_verification_failure(err.kind)  # something stored did not verify: operators alert on this
    context.abort_with_status(to_status(err))
