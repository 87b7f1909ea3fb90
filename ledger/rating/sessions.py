"""Sessions (R1-R7, R10-R12): a workload's UP-to-stop interval rated into billed units and money."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from ledger.events import EventType, StopReason, UsageEvent, WorkerType, WorkloadKind
from ledger.plans import Granularity, Plan, PlanHistory
from ledger.pricebook import PriceHistory
from ledger.rating.attribution import Attribution, RequestSpan, attribute_serving
from ledger.rating.money import exact_sum, format_money, format_seconds
from ledger.rating.units import UnitRun, WindowUsage, billed_unit_count, build_runs, usage_of_runs
from ledger.timeutil import MICROS_PER_SECOND, format_micros

LoggedEvent = tuple[UsageEvent, int]
"""An event and the sequence number of its entry in the org's log."""


@dataclass(frozen=True, slots=True)
class Session:
    """A workload's metered interval, UP to stop (R1), billed in whole units (R10) at its rates (R11, R12).

    `stop` None means open: `billed_units` are the units started before `as_of`, the session's evidence of running
    (R10, R28), never the wall clock. The seqs name the ledger entries the session rests on; `rules` are the rules
    that decided it.
    """

    org_id: str
    workload_id: str
    endpoint_id: str
    workspace_id: str | None
    workload_kind: WorkloadKind
    instance_type: str
    worker_type: WorkerType
    development: bool
    up: int
    ready: int | None
    stop: int | None
    stop_reason: StopReason | None
    up_seq: int
    ready_seq: int | None
    stop_seq: int | None
    boot_failed_seq: int | None
    granularity: Granularity
    plan_version: int | None
    unit_seconds: int
    duration_micros: int
    billed_units: int
    runs: tuple[UnitRun, ...]
    amount: Decimal
    rules: tuple[str, ...]
    as_of: int | None
    attribution: Attribution | None
    explanation: str

    @property
    def is_open(self) -> bool:
        return self.stop is None

    @property
    def entry_seqs(self) -> tuple[int, ...]:
        """Every ledger entry the session's figures rest on: UP, READY, STOPPED, BOOT_FAILED."""
        seqs = (self.up_seq, self.ready_seq, self.stop_seq, self.boot_failed_seq)
        return tuple(sorted(seq for seq in seqs if seq is not None))

    @property
    def billed_micros(self) -> int:
        return self.billed_units * self.unit_seconds * MICROS_PER_SECOND

    def runs_in(self, start: int, end: int) -> tuple[UnitRun, ...]:
        """The session's units that start in [start, end), as runs with their own amounts (R10)."""
        return tuple(part for run in self.runs if (part := run.clip(start, end)) is not None)

    def usage_in(self, start: int, end: int) -> WindowUsage:
        return usage_of_runs(self.runs, start, end)


def rate_session(
    up_entry: LoggedEvent,
    ready_entry: LoggedEvent | None,
    stop_entry: LoggedEvent | None,
    requests: Sequence[RequestSpan],
    prices: PriceHistory,
    plans: PlanHistory,
    evidence: int,
) -> Session:
    """Rate a (non-development) session from its UP, first READY and stop (STOPPED or BOOT_FAILED) entries.

    `requests` are the session's requests (R25); `evidence` is how far the log proves an open session ran
    (R28): it bills the units started before it (R10).
    """
    up_event, up_seq = up_entry
    stop_event, stop_seq = stop_entry if stop_entry is not None else (None, None)
    ready, ready_seq = (ready_entry[0].occurred_at, ready_entry[1]) if ready_entry is not None else (None, None)
    up = up_event.occurred_at
    plan = plans.at(up)  # R10: the plan in force at the session's UP sets its granularity
    unit_seconds = plan.granularity.unit_seconds
    stop = stop_event.occurred_at if stop_event is not None else None
    by_boot_failure = stop_event is not None and stop_event.type is EventType.WORKLOAD_BOOT_FAILED
    # R10/R28: an open session bills the units started before its evidence of running, as if it stopped there.
    duration = (stop if stop is not None else max(evidence, up)) - up
    billed_units = billed_unit_count(duration, unit_seconds)
    runs = build_runs(up, billed_units, unit_seconds, prices, up_event.instance_type, up_event.worker_type)
    amount = exact_sum([run.amount for run in runs])
    billed_micros = billed_units * unit_seconds * MICROS_PER_SECOND
    attribution = None
    if up_event.workload_kind is WorkloadKind.SERVING:
        end = stop if stop is not None else up + billed_micros
        attribution = attribute_serving(up, ready, end, billed_micros, amount, runs, requests)

    rules = {"R1", "R10", "R11"}
    if up_event.workload_kind is WorkloadKind.SERVING:
        if duration > 0 and (ready is None or ready > up):
            rules.add("R2")
        if ready is not None and up + duration > ready:
            rules.add("R3")
    if up_event.workload_kind is WorkloadKind.BUILD:
        rules.add("R6")
    elif up_event.workload_kind is WorkloadKind.TRAINING:
        rules.add("R7")
    if stop_event is not None:
        rules.add("R4")
    if by_boot_failure:
        rules.add("R5")
    if len({run.price_version for run in runs}) > 1:
        rules.add("R12")

    stop_reason = StopReason.CRASH if by_boot_failure else stop_event.stop_reason if stop_event else None
    explanation = _explain(up_event, up_seq, stop_event, stop_seq, plan, duration, billed_units, runs, amount, evidence)
    return Session(
        org_id=up_event.org_id,
        workload_id=up_event.workload_id,
        endpoint_id=up_event.endpoint_id,
        workspace_id=up_event.workspace_id,
        workload_kind=up_event.workload_kind,
        instance_type=up_event.instance_type,
        worker_type=up_event.worker_type,
        development=up_event.development,
        up=up,
        ready=ready,
        stop=stop,
        stop_reason=stop_reason,
        up_seq=up_seq,
        ready_seq=ready_seq,
        stop_seq=stop_seq if not by_boot_failure else None,
        boot_failed_seq=stop_seq if by_boot_failure else None,
        granularity=plan.granularity,
        plan_version=plan.version,
        unit_seconds=unit_seconds,
        duration_micros=duration,
        billed_units=billed_units,
        runs=runs,
        amount=amount,
        rules=tuple(sorted(rules, key=lambda rule: int(rule[1:]))),
        as_of=max(evidence, up) if stop is None else None,
        attribution=attribution,
        explanation=explanation,
    )


def _explain(
    up_event: UsageEvent,
    up_seq: int,
    stop_event: UsageEvent | None,
    stop_seq: int | None,
    plan: Plan,
    duration: int,
    billed_units: int,
    runs: Sequence[UnitRun],
    amount: Decimal,
    evidence: int,
) -> str:
    window = f"R1: metered from WORKLOAD_UP (entry #{up_seq}, {format_micros(up_event.occurred_at)})"
    if stop_event is None:
        window += (
            f", still open; R28: the log proves it running up to {format_micros(max(evidence, up_event.occurred_at))}"
        )
    elif stop_event.type is EventType.WORKLOAD_BOOT_FAILED:
        window += (
            f" to WORKLOAD_BOOT_FAILED (entry #{stop_seq}, {format_micros(stop_event.occurred_at)}); "
            "R5: a boot failure after UP ends the session like a stop with reason CRASH"
        )
    else:
        reason = stop_event.stop_reason.value if stop_event.stop_reason else "no reason"
        window += (
            f" to WORKLOAD_STOPPED (entry #{stop_seq}, {reason}, {format_micros(stop_event.occurred_at)}); "
            "R4: billed up to termination"
        )
    parts = [window]
    if up_event.workload_kind is WorkloadKind.BUILD:
        parts.append("R6: image builds are billed from UP to STOPPED whether they succeed or fail")
    elif up_event.workload_kind is WorkloadKind.TRAINING:
        parts.append("R7: training is billed wall-clock from UP to STOPPED")

    granularity = plan.granularity
    unit = granularity.unit_name()
    seconds = format_seconds(duration)
    counted = f"{billed_units} {granularity.unit_name(billed_units)}"
    if stop_event is None:
        parts.append(f"R10: {seconds} s proven, {counted} started within it (billed as each starts)")
    elif billed_units == 0:
        parts.append(f"R10: {seconds} s bills nothing")
    elif billed_units * granularity.unit_seconds * MICROS_PER_SECOND == duration:
        parts.append(f"R10: {seconds} s billed as {counted}")
    else:
        parts.append(f"R10: {seconds} s billed as {counted} (partial {unit} rounded up)")
    parts.append(plan.describe())

    rate_of = f"{up_event.instance_type} {up_event.worker_type.value}"
    if len(runs) == 1:
        run = runs[0]
        parts.append(
            f"R11: {rate_of} at {format_money(run.rate_per_second)}/s = {format_money(run.unit_price)} per {unit} "
            f"(price book v{run.price_version})"
        )
    elif runs:
        priced = ", ".join(
            f"{run.count} {granularity.unit_name(run.count)} at {format_money(run.rate_per_second)}/s "
            f"(price book v{run.price_version})"
            for run in runs
        )
        parts.append(f"R11/R12: {rate_of}, each unit priced by the book in force at its start: {priced}")
    parts.append(f"amount {format_money(amount)}")
    return "; ".join(parts)
