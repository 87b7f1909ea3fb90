"""The one place where domain errors become gRPC statuses with google.rpc error details (AIP-193).

server/faults.py answers every call with these (the request guard runs it around each handler); handlers raise.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ledger.errors import EventConflict, InvalidInput, LedgerError, NotFound, StorageError, VerificationError

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
    for key, value in err.metadata.items():
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


def bounded(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    kept = max(0, limit - 40)  # room for the note
    return f"{text[:kept]}… ({len(text) - kept} more characters)"


def internal_status(incident: str) -> grpc.Status:
    """INTERNAL for an error nobody raised on purpose: a fixed message and the incident id of the server's log line."""
    message = f"internal error (incident {incident}; the server's log has the details)"
    return edge_status(code_pb2.INTERNAL, "INTERNAL_ERROR", message, {"incident": incident})


def edge_status(code: int, reason: str, message: str, metadata: Mapping[str, str] | None = None) -> grpc.Status:
    """A status the server's edge answers itself (authentication, the policy, an internal error): its ErrorInfo."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata or {})
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=pack([info])))
