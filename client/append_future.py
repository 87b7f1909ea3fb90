"""One appended event's answer from the ledger: a future that costs no lock of its own (issue #26).

A `concurrent.futures.Future` builds a `threading.Condition` (and its lock) in its constructor and takes that lock
to start, resolve and read it. The batching appender makes one per event, and measured against a server that
answers at once, that lifecycle was most of the appender's own cost per event beside converting the event. An
`AppendFuture` is four slots: the futures of one appender share its lock and one condition to wait on, which its
sender notifies once per batch resolved, not once per event.

It answers what a caller asks of a future: `result`, `exception`, `done`, `cancel`, `cancelled`, `running` and
`add_done_callback`, with `concurrent.futures`' meanings and exceptions (`TimeoutError`, `CancelledError`). It is
not a `concurrent.futures.Future`, so `concurrent.futures.wait` and `as_completed` do not take it: wait on each
result, or `flush()` the appender.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("usageledger.client")

# A future's states, in the only order it moves through them; the last three are done.
PENDING, RUNNING, CANCELLED, FINISHED, FAILED = range(5)


class AppendFuture(Generic[T]):
    """The ledger's answer for one event; see the module docstring. Only its appender starts and resolves it."""

    __slots__ = ("_answered", "_callbacks", "_outcome", "_state")

    def __init__(self, answered: threading.Condition) -> None:
        self._answered = answered  # the appender's: its lock guards every state change, notified as futures resolve
        self._state = PENDING
        self._outcome: Any = None  # the result once FINISHED, the exception once FAILED
        self._callbacks: list[Callable[[AppendFuture[T]], object]] | None = None

    def done(self) -> bool:
        return self._state >= CANCELLED

    def running(self) -> bool:
        return self._state == RUNNING

    def cancelled(self) -> bool:
        return self._state == CANCELLED

    def cancel(self) -> bool:
        """Cancel the event if its batch has not been taken yet: it is then never sent. False once taken, for the
        event may be in the ledger."""
        with self._answered:
            if self._state == PENDING:
                self._state = CANCELLED
                self._answered.notify_all()
                callbacks, self._callbacks = self._callbacks, None
            else:
                return self._state == CANCELLED
        _run(self, callbacks)
        return True

    def result(self, timeout: float | None = None) -> T:
        """The ledger's answer; raises what refused the event, CancelledError, or TimeoutError after `timeout` s."""
        self._wait(timeout)
        if self._state == FAILED:
            raise self._outcome
        return self._outcome  # type: ignore[no-any-return]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """What refused the event (None if the ledger acknowledged it); raises CancelledError or TimeoutError."""
        self._wait(timeout)
        return self._outcome if self._state == FAILED else None

    def add_done_callback(self, callback: Callable[[AppendFuture[T]], object]) -> None:
        """Call `callback(future)` once it is done: at once if it is, else on the thread that resolves it."""
        with self._answered:
            if not self.done():
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
        _run(self, [callback])

    def _wait(self, timeout: float | None) -> None:
        if not self.done():  # states only move forward: a done future needs no lock
            with self._answered:
                if not self._answered.wait_for(self.done, timeout):
                    raise FutureTimeout()
        if self._state == CANCELLED:
            raise CancelledError()


def start(futures: Iterable[AppendFuture[Any]]) -> list[bool]:
    """Mark each pending future running, its event about to be sent: from here it cannot be cancelled. Per future,
    whether it was pending (False: its caller cancelled it, so its event is not to be sent). The caller holds the
    appender's lock."""
    started = []
    for future in futures:
        pending = future._state == PENDING
        if pending:
            future._state = RUNNING
        started.append(pending)
    return started


def resolve(answered: threading.Condition, outcomes: Iterable[tuple[AppendFuture[Any], Any, bool]]) -> None:
    """Finish each future with its (outcome, failed): a result, or the exception that refused its event. One lock
    and one wake-up for them all, then the done callbacks, outside the lock."""
    callbacks: list[tuple[AppendFuture[Any], list[Callable[[AppendFuture[Any]], object]]]] = []
    with answered:
        for future, outcome, failed in outcomes:
            future._outcome = outcome
            future._state = FAILED if failed else FINISHED
            if future._callbacks is not None:
                callbacks.append((future, future._callbacks))
                future._callbacks = None
        answered.notify_all()
    for future, calls in callbacks:
        _run(future, calls)


def _run(future: AppendFuture[Any], callbacks: list[Callable[[AppendFuture[Any]], object]] | None) -> None:
    for callback in callbacks or ():
        try:
            callback(future)
        except Exception:  # as concurrent.futures does: one bad callback stops neither the others nor the sender
            log.exception("a done callback of an AppendFuture raised")
