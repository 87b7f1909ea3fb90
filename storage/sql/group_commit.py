"""Group commit: appends that arrive while a commit is in flight join the next one (issue #26).

An append queues on a commit lane. Whoever finds the lane idle becomes its leader: it takes every queued append
(within the group bounds) and commits them in one transaction, then hands the lane to the oldest append still
queued. The others wait for their own append to be done, answered by whichever leader took it, with exactly its
own results or its own error.

SQLite has one lane (the database has one write lock), and so, measured, does PostgreSQL (PG_LANES). With more,
a log is given a lane when it is first appended to, the lane that has been given the fewest logs, so the appends to
one org's log always meet in one lane's groups while other orgs' commits run beside them on other connections
(several orgs' heads still share a group when their lanes coincide).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ledger.ports import Appended, NewEntry

# A group takes at most this many queued appends, or entries, so no one transaction grows without bound.
GROUP_APPENDS = 1000
GROUP_ENTRIES = 20_000
# PostgreSQL lanes: each commits on its own pooled connection (8 + 8 overflow). One: every org's appends meet in
# the same groups, so a group pays its three round trips for more appends. With four lanes (one per org of the
# benchmark) groups held two or three single-event appends, and 16 clients' appends cost the server 1,311 us of
# CPU each against 795 us with one lane (bench/single_appends.py, docs/benchmarks.md). More lanes would commit
# orgs in parallel where the commit's latency, not this process's CPU, is what bounds ingest.
PG_LANES = 1
# Lanes remember this many logs' lanes; beyond, they start over (a log may then change lanes: its appends stay
# correct, each under its head's lock, but for a while they may group with other orgs' than before).
REMEMBERED_LOGS = 65_536


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass(eq=False)
class QueuedAppend:
    """One append waiting for a group; the leader that takes it sets result or error, then done."""

    entries: Sequence[NewEntry]
    expected_sizes: Mapping[str, int] | None = None
    done: bool = False
    result: list[Appended] | None = None
    error: BaseException | None = None
    # Held while the append waits; released once, when it is answered or handed the lane. One lock per waiter
    # rather than one condition for all: a commit wakes exactly the appends it answered and the next leader,
    # not every waiter of the lane to find out whether it was theirs (with 64 waiters, a seventh of the GIL).
    wake: threading.Lock = field(default_factory=_held_lock, repr=False)

    def logs(self) -> set[str]:
        return {item.log_id for item in self.entries}

    def answer(self) -> list[Appended]:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def take_group(queue: list[QueuedAppend]) -> list[QueuedAppend]:
    """Remove and return the oldest queued appends, within the group bounds (always at least one)."""
    count = entries = 0
    for queued in queue[:GROUP_APPENDS]:
        if count and entries + len(queued.entries) > GROUP_ENTRIES:
            break
        count += 1
        entries += len(queued.entries)
    group = queue[:count]
    del queue[:count]
    return group


class CommitLane:
    """A queue of appends and at most one leader committing a group of them at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[QueuedAppend] = []
        self._leading = False

    def append(self, mine: QueuedAppend, commit: Callable[[list[QueuedAppend]], None]) -> list[Appended]:
        """Queue `mine` and return its answer: lead a group (the lane was idle, or was handed to `mine`) or wait
        for the leader that takes it. `commit` must mark every append of its group done, whatever happens."""
        with self._lock:
            self._queue.append(mine)
            leads = not self._leading
            self._leading = True
        if not leads:
            mine.wake.acquire()  # until answered, or handed the lane as the oldest append queued
            if mine.done:
                return mine.answer()
        with self._lock:
            group = take_group(self._queue)  # the leader is the oldest queued, so it is in its own group
        try:
            commit(group)
        finally:
            for queued in group:
                if not queued.done:  # commit broke its promise: fail the append rather than make it a leader
                    queued.error, queued.done = RuntimeError("the group commit left this append unanswered"), True
            with self._lock:
                successor = self._queue[0] if self._queue else None
                self._leading = successor is not None
            # The next leader first, so the lane's next commit starts while these answers are sent.
            if successor is not None:
                successor.wake.release()
            for queued in group:
                if queued is not mine:
                    queued.wake.release()
        return mine.answer()


class CommitLanes:
    """The lanes of one store, and which lane each log's appends go to."""

    def __init__(self, count: int) -> None:
        self._lanes = [CommitLane() for _ in range(count)]
        self._given = [0] * count  # logs given to each lane
        self._lane_of: dict[str, CommitLane] = {}
        self._lock = threading.Lock()

    def lane_of(self, entries: Sequence[NewEntry]) -> CommitLane:
        """The lane of an append: its first log's (sorted), so one log's appends always share a lane. A log new to
        the lanes goes to the one given the fewest, so a handful of busy orgs spread over every lane (a hash
        of their names put the benchmark's four orgs on two of four lanes)."""
        if len(self._lanes) == 1:
            return self._lanes[0]
        first = min(item.log_id for item in entries)
        lane = self._lane_of.get(first)
        if lane is not None:
            return lane
        with self._lock:
            if len(self._lane_of) >= REMEMBERED_LOGS:
                self._lane_of.clear()
                self._given = [0] * len(self._lanes)
            lane = self._lane_of.get(first)
            if lane is None:
                index = self._given.index(min(self._given))
                self._given[index] += 1
                lane = self._lane_of[first] = self._lanes[index]
            return lane

    def append(self, mine: QueuedAppend, commit: Callable[[list[QueuedAppend]], None]) -> list[Appended]:
        return self.lane_of(mine.entries).append(mine, commit)
