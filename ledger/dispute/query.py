"""The question a support ticket asks (R27): an endpoint or a request, and a window or an approximate time."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.errors import FieldViolation, InvalidInput
from ledger.events import IDENTIFIER_RE, IDENTIFIER_RULE
from ledger.timeutil import MICROS_PER_SECOND

MINUTE = 60 * MICROS_PER_SECOND
DEFAULT_TOLERANCE = 30 * MINUTE  # R27: "an approximate time" means +-30 min unless support says otherwise
MAX_TOLERANCE = 7 * 24 * 60 * MINUTE
MAX_WINDOW = 31 * 24 * 60 * MINUTE  # a lookup answers a ticket, not a month-end report


@dataclass(frozen=True, slots=True)
class DisputeQuery:
    """What a ticket gives (R27). A window is [start, end), or `around` +- `tolerance` (default 30 min); with only
    a request ID the window is the request's own time in flight. The org may be left out when the endpoint or the
    request identifies it."""

    endpoint_id: str | None = None
    org_id: str | None = None
    request_id: str | None = None
    start: int | None = None
    end: int | None = None
    around: int | None = None
    tolerance: int | None = None

    def check(self) -> None:
        """Raise InvalidInput naming every bad field."""
        bad: list[FieldViolation] = []
        for name in ("endpoint_id", "org_id", "request_id"):
            value = getattr(self, name)
            if value is not None and not IDENTIFIER_RE.match(value):
                bad.append(FieldViolation(name, f"must be {IDENTIFIER_RULE}"))
        if self.endpoint_id is None and self.request_id is None:
            bad.append(FieldViolation("endpoint_id", "R27: give the endpoint ID from the ticket, or a request ID"))
        if (self.start is None) != (self.end is None):
            bad.append(FieldViolation("end_time" if self.end is None else "start_time", "give both ends of the window"))
        elif self.start is not None and self.end is not None:
            if self.end <= self.start:
                bad.append(FieldViolation("end_time", "must be after start_time"))
            elif self.end - self.start > MAX_WINDOW:
                bad.append(
                    FieldViolation(
                        "end_time", "a window is at most 31 days; narrow it to the ticket's time", "WINDOW_TOO_LONG"
                    )
                )
            if self.around is not None:
                bad.append(FieldViolation("approximate_time", "give a window or an approximate time, not both"))
        if self.tolerance is not None:
            if self.around is None:
                bad.append(FieldViolation("tolerance", "only an approximate time takes a tolerance"))
            elif not 0 < self.tolerance <= MAX_TOLERANCE:
                bad.append(FieldViolation("tolerance", "must be more than 0 and at most 7 days"))
        if self.start is None and self.around is None and self.request_id is None:
            bad.append(
                FieldViolation("approximate_time", "R27: give the ticket's approximate time, a window or a request ID")
            )
        if bad:
            raise InvalidInput(bad)

    def window(self) -> tuple[int, int] | None:
        if self.start is not None and self.end is not None:
            return self.start, self.end
        if self.around is not None:
            tolerance = self.tolerance if self.tolerance is not None else DEFAULT_TOLERANCE
            return self.around - tolerance, self.around + tolerance
        return None
