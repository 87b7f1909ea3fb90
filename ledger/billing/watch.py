"""In-process publish/subscribe of account state changes (R15, R19), so the control plane hears each flip at once."""

from __future__ import annotations

import queue
import threading
from collections import defaultdict

from ledger.billing.account_state import StateChange


class StateSubscription:
    """One watcher's queue of changes to one org, in the order they were appended. Never drops a change."""

    def __init__(self, hub: AccountStateHub, org_id: str) -> None:
        self.hub = hub
        self.org_id = org_id
        self._queue: queue.SimpleQueue[StateChange | None] = queue.SimpleQueue()

    def put(self, change: StateChange | None) -> None:
        self._queue.put(change)

    def get(self, timeout: float) -> StateChange | None:
        """The next change, or None when none came within `timeout` seconds or the hub closed."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    @property
    def closed(self) -> bool:
        return self.hub.closed

    def close(self) -> None:
        self.hub.unsubscribe(self)

    def __enter__(self) -> StateSubscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AccountStateHub:
    """Fans each appended STATE change out to the subscriptions of its org.

    Only changes appended by this process are published; a watcher that reconnects replays what it missed from
    the log (WatchAccountState's `start_sequence`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: dict[str, list[StateSubscription]] = defaultdict(list)
        self.closed = False

    def subscribe(self, org_id: str) -> StateSubscription:
        subscription = StateSubscription(self, org_id)
        with self._lock:
            self._subscriptions[org_id].append(subscription)
        return subscription

    def unsubscribe(self, subscription: StateSubscription) -> None:
        with self._lock:
            subscribers = self._subscriptions.get(subscription.org_id, [])
            if subscription in subscribers:
                subscribers.remove(subscription)
            if not subscribers:
                self._subscriptions.pop(subscription.org_id, None)

    def publish(self, change: StateChange) -> None:
        with self._lock:
            subscribers = list(self._subscriptions.get(change.org_id, ()))
        for subscription in subscribers:
            subscription.put(change)

    def subscriber_count(self, org_id: str) -> int:
        with self._lock:
            return len(self._subscriptions.get(org_id, ()))

    def close(self) -> None:
        """Wake every watcher so its stream can end (server shutdown)."""
        with self._lock:
            self.closed = True
            subscribers = [s for group in self._subscriptions.values() for s in group]
        for subscription in subscribers:
            subscription.put(None)
