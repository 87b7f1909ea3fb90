"""Account state (R15, R19): STATE entries for spend-limit and deactivation flips and the payment method on file.

Two independent flags make the state: `SPEND_LIMIT_EXCEEDED` (R15) and `DEACTIVATED` (R19); DEACTIVATED wins
when both are set. Each flip is a STATE entry holding the instant it happened and the figures behind it.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from enum import StrEnum
from typing import Any

from ledger.rating import OrgRating, usage_in_window
from ledger.rating.money import EXACT
from ledger.timeutil import MICROS_PER_SECOND, format_micros, parse_rfc3339_micros

HOUR = 3600 * MICROS_PER_SECOND  # R15: the spend window is the 60 minutes up to the instant


class StateChangeType(StrEnum):
    SPEND_LIMIT_EXCEEDED = "SPEND_LIMIT_EXCEEDED"
    SPEND_LIMIT_CLEARED = "SPEND_LIMIT_CLEARED"
    DEACTIVATED = "DEACTIVATED"
    REACTIVATED = "REACTIVATED"
    PAYMENT_METHOD_SET = "PAYMENT_METHOD_SET"
    PAYMENT_METHOD_CLEARED = "PAYMENT_METHOD_CLEARED"


class StateFamily(StrEnum):
    """Changes of one family alternate; their ordinal in the family is their idempotency key."""

    SPEND_LIMIT = "spend-limit"
    DEACTIVATION = "deactivation"
    PAYMENT_METHOD = "payment-method"


FAMILY_OF: Mapping[StateChangeType, StateFamily] = {
    StateChangeType.SPEND_LIMIT_EXCEEDED: StateFamily.SPEND_LIMIT,
    StateChangeType.SPEND_LIMIT_CLEARED: StateFamily.SPEND_LIMIT,
    StateChangeType.DEACTIVATED: StateFamily.DEACTIVATION,
    StateChangeType.REACTIVATED: StateFamily.DEACTIVATION,
    StateChangeType.PAYMENT_METHOD_SET: StateFamily.PAYMENT_METHOD,
    StateChangeType.PAYMENT_METHOD_CLEARED: StateFamily.PAYMENT_METHOD,
}
RULE_OF: Mapping[StateFamily, str] = {
    StateFamily.SPEND_LIMIT: "R15",
    StateFamily.DEACTIVATION: "R19",
    StateFamily.PAYMENT_METHOD: "R19",
}


class AccountState(StrEnum):
    ACTIVE = "ACTIVE"
    SPEND_LIMIT_EXCEEDED = "SPEND_LIMIT_EXCEEDED"
    DEACTIVATED = "DEACTIVATED"


@dataclass(frozen=True)
class StateChange:
    """One STATE entry: what changed, the instant it happened, and the figures that caused it."""

    org_id: str
    change: StateChangeType
    at: int
    ordinal: int
    explanation: str
    figures: Mapping[str, str] = field(default_factory=dict)
    reference: str | None = None
    sequence: int = -1

    @property
    def family(self) -> StateFamily:
        return FAMILY_OF[self.change]

    @property
    def rule(self) -> str:
        return RULE_OF[self.family]

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "org_id": self.org_id,
            "idempotency_key": f"state:{self.family.value}:{self.ordinal}",
            "change": self.change.value,
            "at": format_micros(self.at),
            "rule": self.rule,
            "figures": dict(self.figures),
            "explanation": self.explanation,
        }
        if self.reference is not None:
            body["reference"] = self.reference
        return body

    @classmethod
    def from_body(cls, body: Mapping[str, Any], sequence: int) -> StateChange:
        return cls(
            org_id=body["org_id"],
            change=StateChangeType(body["change"]),
            at=parse_rfc3339_micros(body["at"]),
            ordinal=int(str(body["idempotency_key"]).rsplit(":", 1)[1]),
            explanation=body.get("explanation", ""),
            figures=dict(body.get("figures", {})),
            reference=body.get("reference"),
            sequence=sequence,
        )


@dataclass(frozen=True)
class AccountStatus:
    """The flags the org's STATE entries leave in force."""

    changes: tuple[StateChange, ...] = ()
    spend_limit_exceeded: bool = False
    deactivated: bool = False
    payment_method: str | None = None

    @property
    def state(self) -> AccountState:
        if self.deactivated:
            return AccountState.DEACTIVATED
        if self.spend_limit_exceeded:
            return AccountState.SPEND_LIMIT_EXCEEDED
        return AccountState.ACTIVE

    def last(self, family: StateFamily) -> StateChange | None:
        return next((c for c in reversed(self.changes) if c.family is family), None)

    def next_ordinal(self, family: StateFamily) -> int:
        last = self.last(family)
        return last.ordinal + 1 if last is not None else 1

    def with_change(self, change: StateChange) -> AccountStatus:
        return fold_status((*self.changes, change))


def fold_status(changes: Iterable[StateChange]) -> AccountStatus:
    ordered = tuple(sorted(changes, key=lambda c: c.sequence if c.sequence >= 0 else 1 << 62))
    exceeded = deactivated = False
    method: str | None = None
    for change in ordered:
        kind = change.change
        if kind is StateChangeType.SPEND_LIMIT_EXCEEDED:
            exceeded = True
        elif kind is StateChangeType.SPEND_LIMIT_CLEARED:
            exceeded = False
        elif kind is StateChangeType.DEACTIVATED:
            deactivated = True
        elif kind is StateChangeType.REACTIVATED:
            deactivated = False
        elif kind is StateChangeType.PAYMENT_METHOD_SET:
            method = change.reference
        else:
            method = None
    return AccountStatus(ordered, exceeded, deactivated, method)


# -- R15: hourly spend ------------------------------------------------------------------------------------------------


def hourly_spend(rating: OrgRating, at: int) -> Decimal:
    """R15: the charge of units (R10) and storage intervals that start in (at - 60 min, at].

    `rating` must be as of `at + 1 µs` or later, so a unit starting exactly at `at` is in it.
    """
    return usage_in_window(rating.sessions, rating.storage, at - HOUR + 1, at + 1).amount


@dataclass(frozen=True, slots=True)
class SpendFlip:
    at: int
    exceeded: bool
    spend: Decimal
    limit: Decimal


_NO_CHANGE = Decimal(0)


def spend_flips(
    rating: OrgRating,
    limit_at: Callable[[int], Decimal],
    limit_changes: Sequence[int],
    *,
    exceeded: bool,
    since: int,
    until: int,
) -> list[SpendFlip]:
    """Every instant in (since, until] where R15's comparison flips, starting from `exceeded`.

    Hourly spend is a step function: it rises when a unit or storage interval starts and falls 60 minutes later,
    and the limit changes only at account-setting instants; so checking those instants (and `until`) in order finds
    each flip exactly. `rating` must be as of `until + 1 µs` or later. Cost grows with the units starting in
    (since - 60 min, until], so callers keep (since, until] short.
    """
    if until <= since:
        return []
    # Each instant's net change, summed as it is found (exact arithmetic: the same totals as summing later).
    deltas: dict[int, Decimal] = defaultdict(Decimal)
    windows = ((since + 1, until + 1, 1, 0), (since - HOUR + 1, until - HOUR + 1, -1, HOUR))
    # The closer calls this for every org touched by appends about once a second, with a window of a second or
    # so, over every session of the org's history: skip, before clipping, a run with no unit starting in either
    # window (its units all start before the earlier one or after the later one).
    lowest, highest = since - HOUR + 1, until + 1
    with localcontext(EXACT):
        for session in rating.sessions:
            for run in session.runs:
                first = run.first_unit_start
                if first >= highest or first + (run.count - 1) * run.unit_seconds * MICROS_PER_SECOND < lowest:
                    continue
                for start, end, sign, shift in windows:
                    part = run.clip(start, end)
                    if part is None:
                        continue
                    price = part.unit_price if sign > 0 else -part.unit_price
                    step = part.unit_micros
                    first_start = part.first_unit_start + shift
                    for instant in range(first_start, first_start + part.count * step, step):
                        deltas[instant] += price
        for charge in rating.storage:
            for start, end, sign, shift in windows:
                if start <= charge.start < end and charge.amount:
                    deltas[charge.start + shift] += charge.amount if sign > 0 else -charge.amount
    candidates = sorted({*deltas, *(c for c in limit_changes if since < c <= until), until})
    spend = hourly_spend(rating, since)
    flips: list[SpendFlip] = []
    # The limit is constant between consecutive limit changes: ask limit_at again only past one.
    changes = sorted(limit_changes)
    limit_period: int | None = None
    limit = Decimal(0)
    with localcontext(EXACT):
        for instant in candidates:
            spend += deltas.get(instant, _NO_CHANGE)
            period = bisect.bisect_right(changes, instant)
            if period != limit_period:
                limit, limit_period = limit_at(instant), period
            over = spend > limit
            if over != exceeded:
                flips.append(SpendFlip(instant, over, spend, limit))
                exceeded = over
    return flips
