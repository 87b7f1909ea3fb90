"""Group commit: appends that arrive while a commit is in flight join the next one (issue #26).

An append queues on a commit lane. Whoever finds the lane idle becomes its leader: it takes every queued append
(within the group bounds) and commits them in one transaction, then hands the lane on. The others wait for their
own append to be done, answered by whichever leader took it, with exactly its own results or its own error.

SQLite has one lane (the database has one write lock). PostgreSQL has a few, an append going to the lane of the
first log it writes (sorted), so the appends to one org's log always meet in one lane's groups while other orgs'
commits run beside them on other connections (several orgs' heads still share a group when their lanes coincide).
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ledger.ports import Appended, NewEntry

# A group takes at most this many queued appends, or entries, so no one transaction grows without bound.
GROUP_APPENDS = 1000
GROUP_ENTRIES = 20_000
# PostgreSQL lanes: each commits on its own pooled connection (8 + 8 overflow), leaving some for reads.
PG_LANES = 4


@dataclass(eq=False)
class QueuedAppend:
    """One append waiting for a group; the leader that takes it sets result or error, then done."""

    entries: Sequence[NewEntry]
    expected_sizes: Mapping[str, int] | None = None
    done: bool = False
    result: list[Appended] | None = None
    error: BaseException | None = None

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
        self._changed = threading.Condition(threading.Lock())
        self._queue: list[QueuedAppend] = []
        self._leading = False

    def append(self, mine: QueuedAppend, commit: Callable[[list[QueuedAppend]], None]) -> list[Appended]:
        """Queue `mine`; lead groups while it is not yet done and the lane is idle. `commit` must mark every
        append of its group done (with a result or an error), whatever happens."""
        with self._changed:
            self._queue.append(mine)
        while True:
            with self._changed:
                while self._leading and not mine.done:
                    self._changed.wait()
                if mine.done:
                    return mine.answer()
                self._leading = True
                group = take_group(self._queue)
            try:
                commit(group)
            finally:
                with self._changed:
                    self._leading = False
                    self._changed.notify_all()  # the answered return; one of the rest leads the next group


def lane_of(lanes: Sequence[CommitLane], entries: Sequence[NewEntry]) -> CommitLane:
    """The lane of an append: by the first log (sorted) it writes, so one log's appends always share a lane."""
    if len(lanes) == 1:
        return lanes[0]
    first = min(item.log_id for item in entries)
    return lanes[zlib.crc32(first.encode()) % len(lanes)]
