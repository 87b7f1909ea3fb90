"""Group commit: appends that arrive while a commit is in flight join the next one (issue #26).

An append queues on a commit lane. Whoever finds the lane idle becomes its leader: it takes every queued append
(within the group bounds) and commits them in one transaction, then hands the lane to the oldest append still
queued. The others wait for their own append to be done, answered by whichever leader took it, with exactly its
own results or its own error.

A leader gathers before it takes: when the lane's last group held several appends, it waits up to GATHER_SECONDS
for as many to be queued (CommitLane.append). Under concurrent single-event appends the callers a commit answered
send their next appends at once, and they arrive over the following millisecond or so; a leader that took only
those already queued committed groups of about three, and each commit (its statements, PostgreSQL's work, a WAL
flush) was paid by three appends. A lone caller's groups hold one append, so it never waits.

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
# How long a leader waits at most for as many appends as its lane's last group held. bench/single_appends.py
# (docs/benchmarks.md, 2026-12-07, sixth session), PostgreSQL, 16 clients: a plain wait before every group of 0.5 ms
# gave 0.48 of the Check rate, 1.5 ms 0.49-0.51, 3 ms 0.51-0.54, 6 ms 0.44-0.46 (the lane idles), none 0.45-0.47;
# but a plain 2 ms cost 2 clients 13% of their appends. Waiting only for the last group's count, 2 ms at most:
# 2 clients unchanged, 4 clients +25% (SQLite +13%), 16 clients +6-10% on both stores.
GATHER_SECONDS = 0.002
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
        self._last_group = 0  # appends in the lane's last group
        # A gathering leader's wait: released by the append that makes the queue `_gathered` long.
        self._gathering: threading.Lock | None = None
        self._gathered = 0

    def append(self, mine: QueuedAppend, commit: Callable[[list[QueuedAppend]], None]) -> list[Appended]:
        """Queue `mine` and return its answer: lead a group (the lane was idle, or was handed to `mine`) or wait
        for the leader that takes it. `commit` must mark every append of its group done, whatever happens."""
        with self._lock:
            self._queue.append(mine)
            leads = not self._leading
            self._leading = True
            if self._gathering is not None and len(self._queue) >= self._gathered:
                self._gathering.release()  # the leader has its group: one wake for the whole group
                self._gathering = None
        if not leads:
            mine.wake.acquire()  # until answered, or handed the lane as the oldest append queued
            if mine.done:
                return mine.answer()
        self._gather()
        with self._lock:
            group = take_group(self._queue)  # the leader is the oldest queued, so it is in its own group
            self._last_group = len(group)
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

    def _gather(self) -> None:
        """Wait up to GATHER_SECONDS until as many appends are queued as the last group held (module docstring)."""
        with self._lock:
            if self._last_group < 2 or len(self._queue) >= self._last_group:
                return
            gathering = self._gathering = _held_lock()
            self._gathered = self._last_group
        gathering.acquire(timeout=GATHER_SECONDS)
        with self._lock:
            self._gathering = None


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
