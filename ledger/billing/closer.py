"""The period closer: a background thread that issues invoices (R17, R18) and flips account state (R15, R19)
as time passes, on the ledger's (injectable) clock.

Every `interval` seconds it ticks every org: close the period at now, then look for R15 flips since the last
look and re-check R19. After an append, the server wakes it for the orgs touched, so a flip caused by new usage
is recorded (and pushed to watchers) within moments instead of at the next full tick; the append path itself only
marks the org, it never rates.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from ledger.billing.engine import BillingEngine
from ledger.log.entry import org_of_log
from ledger.metrics import OrgLooks
from ledger.tracing import root_span, span

log = logging.getLogger("usageledger.billing")

DEFAULT_CLOSE_INTERVAL = 30.0
_LIST_PAGE = 500
# How often the thread checks that its server still runs while it waits for the next tick.
_POLL_SECONDS = 0.25
# Orgs touched by appends are evaluated at most this often (or every tick, if ticks are more frequent).
_MAX_DIRTY_GAP_SECONDS = 1.0
# After evaluating an org for t seconds the closer rests PACE_FACTOR x t before the next one. An evaluation re-rates
# the org's usage since its last invoice (ledger/billing/scope.py; its first one looks 24 h back for R15 flips),
# and under sustained ingest every org is always touched: unpaced, the closer would hold the GIL for most of the
# time appends need it. Paced, it takes at most 1 / (1 + PACE_FACTOR) of the time; a flip found later is still
# recorded at the instant it happened (R15 looks back to the last check), just later.
PACE_FACTOR = 3.0


class PeriodCloser:
    def __init__(
        self,
        engine: BillingEngine,
        interval: float = DEFAULT_CLOSE_INTERVAL,
        *,
        serving: Callable[[], bool] = lambda: True,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"the close interval must be positive, got {interval}")
        self.engine = engine
        self.interval = interval
        self.min_gap = min(interval, _MAX_DIRTY_GAP_SECONDS)
        self._serving = serving
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._dirty: set[str] = set()
        self._dirty_lock = threading.Lock()
        self._passes = 0
        # What each tick saw of its org, exported as the settled-through lag and open backfills (ledger/metrics.py).
        self.looks = OrgLooks(engine.now)
        self._stop_looks: Callable[[], None] = lambda: None
        self._passes_changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="period-closer", daemon=True)

    # -- control ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop_looks = self.looks.register()
        self.thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the org being evaluated and end the thread (before the store closes)."""
        self._stopped.set()
        self._wake.set()
        self._stop_looks()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout)

    def notify(self, org_ids: Iterable[str]) -> None:
        """Entries were appended for these orgs: evaluate them soon (cheap: it only marks them).

        Only the first mark since the last pass wakes the thread: once orgs are marked, it is already waiting
        for their turn (_MAX_DIRTY_GAP_SECONDS), and waking it at every append of a busy org cost a thread switch
        per append for it to find nothing due and sleep again (issue #26)."""
        with self._dirty_lock:
            first = not self._dirty
            self._dirty.update(org_ids)
        if first:
            self._wake.set()

    def wait_for_pass(self, after: int, timeout: float) -> int:
        """Block until more than `after` passes have completed (tests use it to wait for the thread)."""
        with self._passes_changed:
            self._passes_changed.wait_for(lambda: self._passes > after, timeout)
            return self._passes

    @property
    def passes(self) -> int:
        with self._passes_changed:
            return self._passes

    # -- work ---------------------------------------------------------------------------------------------------

    def all_orgs(self) -> list[str]:
        orgs: list[str] = []
        after = ""
        while True:
            heads = self.engine.ledger.store.list_logs(after, _LIST_PAGE)
            orgs.extend(org for head in heads if (org := org_of_log(head.log_id)) is not None)
            if len(heads) < _LIST_PAGE:
                return orgs
            after = heads[-1].log_id

    def evaluate(self, org_ids: Iterable[str]) -> None:
        """One tick for each org; one org's failure (a race with another server, say) never stops the others."""
        for org_id in org_ids:
            if self._stopped.is_set():
                return
            started = time.monotonic()
            try:
                with span("billing.closer.evaluate", org_id=org_id):
                    result, changes = self.engine.tick(org_id)
            except Exception:
                log.exception("billing evaluation of org %s failed; it is retried at the next tick", org_id)
                continue
            finally:
                self._stopped.wait(PACE_FACTOR * (time.monotonic() - started))
            self.looks.saw(org_id, result.settled_through, result.open_backfills)
            for invoice in result.issued:
                log.info("org %s: invoice #%d issued (%s)", org_id, invoice.number, invoice.trigger.value)
            for change in changes:
                log.info("org %s: %s", org_id, change.explanation)

    def _take_dirty(self) -> list[str]:
        with self._dirty_lock:
            dirty = sorted(self._dirty)
            self._dirty.clear()
        return dirty

    def _has_dirty(self) -> bool:
        with self._dirty_lock:
            return bool(self._dirty)

    def _run(self) -> None:
        next_full = time.monotonic()
        next_dirty = next_full
        while not self._stopped.is_set() and self._serving():
            now = time.monotonic()
            full_due = now >= next_full
            dirty_due = now >= next_dirty and self._has_dirty()
            if not (full_due or dirty_due):
                waits = [next_full - now, _POLL_SECONDS]
                if self._has_dirty():
                    waits.append(next_dirty - now)
                self._wake.wait(max(0.0, min(waits)))
                self._wake.clear()
                continue
            orgs = self._take_dirty()
            with root_span("billing.closer.pass", full=full_due) as current:
                if full_due:
                    next_full = now + self.interval
                    try:
                        orgs = sorted({*orgs, *self.all_orgs()})
                    except Exception:
                        log.exception("listing orgs for the period closer failed; retrying in %.1f s", self.interval)
                current.set_attribute("orgs", len(orgs))
                self.evaluate(orgs)
            # Under a steady stream of appends, re-rate touched orgs at most this often rather than back to back.
            next_dirty = time.monotonic() + self.min_gap
            with self._passes_changed:
                self._passes += 1
                self._passes_changed.notify_all()
