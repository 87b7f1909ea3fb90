"""Backfills (R29): BACKFILL entries that bracket the events of a past range sent late.

While a backfill is open, R17's grace issues no month-end invoice for a month it overlaps: the month waits for the
settled-through time (R28), which still cuts invoices as it advances. A backfill is opened and closed by the party
sending the events (`ledgerctl events ingest` brackets a file of past events on its own); the ledger closes one left
open for 24 hours. Each mark is an entry in the org's log, so an auditor sees when the grace was held back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ledger.errors import FieldViolation, InvalidInput
from ledger.events import IDENTIFIER_RE, IDENTIFIER_RULE
from ledger.timeutil import format_micros, parse_rfc3339_micros

MAX_BACKFILL_OPEN = 24 * 3600 * 1_000_000  # R29: the ledger closes a backfill left open this long (ledger clock)
MAX_REASON = 500


class BackfillAction(StrEnum):
    OPENED = "OPENED"
    CLOSED = "CLOSED"


@dataclass(frozen=True, slots=True)
class BackfillMark:
    """One BACKFILL entry: a backfill of [start, end) opened or closed at `at` (the ledger clock), and why."""

    org_id: str
    backfill_id: str
    action: BackfillAction
    start: int
    end: int
    reason: str
    at: int
    sequence: int = -1

    def body(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "idempotency_key": f"backfill:{self.backfill_id}:{self.action.value}",
            "backfill_id": self.backfill_id,
            "action": self.action.value,
            "from": format_micros(self.start),
            "to": format_micros(self.end),
            "reason": self.reason,
            "at": format_micros(self.at),
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any], sequence: int) -> BackfillMark:
        return cls(
            org_id=body["org_id"],
            backfill_id=body["backfill_id"],
            action=BackfillAction(body["action"]),
            start=parse_rfc3339_micros(body["from"]),
            end=parse_rfc3339_micros(body["to"]),
            reason=body["reason"],
            at=parse_rfc3339_micros(body["at"]),
            sequence=sequence,
        )


@dataclass(frozen=True, slots=True)
class Backfill:
    """A backfill as its marks describe it (R29): open until its CLOSED mark."""

    org_id: str
    backfill_id: str
    start: int
    end: int
    reason: str
    opened: BackfillMark
    closed: BackfillMark | None

    @property
    def is_open(self) -> bool:
        return self.closed is None

    def overlaps(self, start: int, end: int) -> bool:
        """Whether its range meets [start, end) (R29: a month it overlaps gets no grace while it is open)."""
        return self.start < end and start < self.end


def backfills_of(marks: Iterable[BackfillMark]) -> list[Backfill]:
    """The org's backfills from its BACKFILL entries, in the order they were opened."""
    found: dict[str, Backfill] = {}
    for mark in marks:
        if mark.action is BackfillAction.OPENED:
            found.setdefault(
                mark.backfill_id, Backfill(mark.org_id, mark.backfill_id, mark.start, mark.end, mark.reason, mark, None)
            )
        elif mark.backfill_id in found and found[mark.backfill_id].closed is None:
            opened = found[mark.backfill_id]
            found[mark.backfill_id] = Backfill(
                opened.org_id, opened.backfill_id, opened.start, opened.end, opened.reason, opened.opened, mark
            )
    return list(found.values())


def grace_held(backfills: Sequence[Backfill], month_start: int, month_end: int) -> Backfill | None:
    """R29: an open backfill overlapping the month, which keeps R17's grace from issuing its month-end invoice."""
    return next((b for b in backfills if b.is_open and b.overlaps(month_start, month_end)), None)


def check_backfill(backfill_id: str, start: int | None, end: int | None, reason: str, *, opening: bool) -> None:
    """Every bad field of an open or close request, at once (InvalidInput)."""
    violations: list[FieldViolation] = []
    if not isinstance(backfill_id, str) or not IDENTIFIER_RE.match(backfill_id):
        violations.append(FieldViolation("backfill_id", f"must be {IDENTIFIER_RULE}"))
    if opening:
        if start is None:
            violations.append(FieldViolation("from_time", "R29: is required (the start of the range backfilled)"))
        if end is None:
            violations.append(FieldViolation("to_time", "R29: is required (the end of the range backfilled)"))
        if start is not None and end is not None and end <= start:
            violations.append(FieldViolation("to_time", "R29: must be after from_time"))
    if not reason.strip() or len(reason) > MAX_REASON:
        violations.append(FieldViolation("reason", f"R29: say why, in 1 to {MAX_REASON} characters"))
    if violations:
        raise InvalidInput(violations)
