"""The project's exception tree: every domain failure is a LedgerError, translated to gRPC status in one place."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose.

    `reason` is the stable UPPER_SNAKE name of the failure kind a program acts on (google.rpc.ErrorInfo.reason,
    every one listed in docs/errors.md); `metadata` names the offending values (ErrorInfo.metadata).
    """

    reason = "LEDGER_ERROR"

    @property
    def metadata(self) -> Mapping[str, str]:
        return {}


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: `field` is a path such as `events[3].occurred_at`. `reason` names the failure kind when it
    is more than "this field is invalid" (WINDOW_TOO_LONG); otherwise it is INVALID_<FIELD> (INVALID_OCCURRED_AT)."""

    field: str
    description: str
    reason: str = ""

    @property
    def kind(self) -> str:
        if self.reason:
            return self.reason
        leaf = re.sub(r"\[[^\]]*\]", "", self.field.rsplit(".", 1)[-1])
        return "INVALID_" + (re.sub(r"[^A-Za-z0-9]+", "_", leaf).strip("_").upper() or "ARGUMENT")


class InvalidInput(LedgerError):
    """Input that breaks the contract; nothing was changed. Carries every field violation found."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation]) -> None:
        self.violations = list(violations)
        if self.violations:  # the first violation's kind; metadata names every field
            self.reason = self.violations[0].kind
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations[:5])
        more = f" (+{len(self.violations) - 5} more)" if len(self.violations) > 5 else ""
        super().__init__(f"invalid input: {summary}{more}")

    @property
    def metadata(self) -> Mapping[str, str]:
        if not self.violations:
            return {}
        return {"field": self.violations[0].field, "fields": ",".join(v.field for v in self.violations)}


class EventConflict(LedgerError):
    """R24: an event_id already in the org's log arrived again with different content."""

    reason = "EVENT_ID_CONFLICT"

    def __init__(self, org_id: str, event_id: str, sequence: int | None = None, entry_hash: bytes = b"") -> None:
        self.org_id = org_id
        self.event_id = event_id
        self.sequence = sequence  # the stored entry holding the first fact under this event_id
        self.entry_hash = entry_hash
        where = f" (entry {sequence})" if sequence is not None else ""
        super().__init__(
            f"R24: event_id {event_id!r} is already in org {org_id!r}'s log{where} with different content; "
            "nothing of this batch was appended (send a new event_id for a new fact)"
        )

    @property
    def metadata(self) -> Mapping[str, str]:
        """ErrorInfo metadata: enough for a client to name the stored entry without reading it."""
        found = {"org_id": self.org_id, "event_id": self.event_id}
        if self.sequence is not None:
            found["sequence"] = str(self.sequence)
            found["entry_hash"] = self.entry_hash.hex()
        return found


class NotFound(LedgerError):
    """The log, entry or object asked for does not exist."""

    reason = "NOT_FOUND"


class VerificationError(LedgerError):
    """A hash, proof, checkpoint or signature does not verify. The message names what failed."""

    reason = "VERIFICATION_FAILED"
    # What failed, for usageledger.verification.failures (ledger/metrics.py): low-cardinality, never a value.
    # `log`: stored entries, Merkle nodes or the log head; `checkpoint`: a signed checkpoint or its row.
    kind = "log"

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class StorageError(LedgerError):
    """The store failed in a way the caller may retry (connection lost, lock timeout)."""

    reason = "STORAGE_UNAVAILABLE"


class LogMoved(LedgerError):
    """A conditional append found the log longer than the size its content was computed from (R17): nothing was
    appended; the caller reads the log again and recomputes."""

    reason = "LOG_MOVED"

    def __init__(self, log_id: str, expected: int, actual: int) -> None:
        super().__init__(f"log {log_id} holds {actual} entries, not the {expected} the append was computed from")
        self.log_id = log_id
        self.expected = expected
        self.actual = actual

    @property
    def metadata(self) -> Mapping[str, str]:
        return {"log_id": self.log_id, "expected_size": str(self.expected), "actual_size": str(self.actual)}
