"""Account plans (R10): the metering granularity an org's plan sets, versioned by effective instant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from ledger.timeutil import format_micros


class Granularity(StrEnum):
    """R10: the unit a session's duration is rounded up to."""

    PER_MINUTE = "PER_MINUTE"
    PER_SECOND = "PER_SECOND"

    @property
    def unit_seconds(self) -> int:
        return 60 if self is Granularity.PER_MINUTE else 1

    def unit_name(self, count: int = 1) -> str:
        """ "minute", "minutes", "second" or "seconds", for explanations."""
        name = "minute" if self is Granularity.PER_MINUTE else "second"
        return name if count == 1 else name + "s"


@dataclass(frozen=True, slots=True)
class Plan:
    """One version of an org's plan.

    `version` is the sequence number of the ledger entry that set it (None for the built-in default), so a
    rated session can cite the entry behind its granularity (R27). Further account settings (spend limit R15,
    discount R20, cadence R18) can join as fields with defaults without disturbing existing callers.
    """

    effective_from: int
    granularity: Granularity = Granularity.PER_MINUTE
    version: int | None = None
    note: str = ""

    def describe(self) -> str:
        if self.version is None:
            return f"R10: {self.granularity.value} units (default plan)"
        since = format_micros(self.effective_from)
        return f"R10: {self.granularity.value} units (plan entry #{self.version}, in force from {since})"


# R10: an org that never chose a plan is metered per minute, like the per-minute source (000_3db7cedd6114a431.txt).
DEFAULT_PLAN = Plan(effective_from=0, granularity=Granularity.PER_MINUTE, note="R10 default: per-minute metering")


@dataclass(frozen=True)
class PlanHistory:
    """Every plan version of one org; picks the one in force at an instant (R10: a session uses its UP's plan)."""

    versions: Sequence[Plan] = field(default_factory=tuple)

    def at(self, instant: int) -> Plan:
        """The latest plan with effective_from <= instant (ties: the later entry); the default plan before any."""
        chosen: Plan | None = None
        for plan in self.versions:
            if plan.effective_from <= instant and (chosen is None or _order(plan) >= _order(chosen)):
                chosen = plan
        return chosen if chosen is not None else DEFAULT_PLAN

    def granularity_at(self, instant: int) -> Granularity:
        return self.at(instant).granularity


def _order(plan: Plan) -> tuple[int, int]:
    return (plan.effective_from, -1 if plan.version is None else plan.version)
