"""A batching appender for control planes: one event at a time in, batches of up to 1,000 out (issue #26).

    with BatchingAppender(LedgerClient("127.0.0.1:50051")) as appender:
        future = appender.append({"event_id": "ev-1", "org_id": "acme", ...})
        result = future.result()   # the ledger's AppendResult: log, sequence, entry hash, duplicate (R24)

`append` may be called from any number of threads and returns an AppendFuture (client/append_future.py), a future
with no lock of its own: about 2 µs of the caller's time. A sender thread sends what is waiting as one batch once
`max_batch` events wait or the oldest has waited `max_delay` seconds. A future resolves only after the ledger
acknowledged its event: with its AppendResult (over AppendEvents), or with None once the StreamEvents call that
carried it was answered OK (a stream answers with totals only). Batches are retried with the same event IDs on
UNAVAILABLE, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED, with jittered doubling backoff (LedgerClient's policy):
R24 answers an event already appended with its original entry, so a retry never appends twice. A batch the
ledger refuses for good (a malformed event, an R24 conflict) is split in halves and each half sent again, so
only the events at fault fail, each with its own error, and every other event still lands.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
from usageledger.v1 import ledger_pb2 as pb

from client import append_future
from client.append_future import AppendFuture
from client.ledger_client import APPEND_RETRYABLE, LedgerClient
from wire import convert

DEFAULT_MAX_BATCH = 1000
DEFAULT_MAX_DELAY_SECONDS = 0.005
# append() blocks while this many events wait unsent: a stalled ledger slows the caller instead of filling memory.
DEFAULT_MAX_WAITING = 100_000
TRANSPORTS = ("append", "stream")
# A StreamEvents call carries at most this many batches before it is answered and the next one opened.
STREAM_BATCHES = 8


Answer = AppendFuture[pb.AppendResult | None]
# An event as appended, and its future (a plain tuple: one is made per event, and a class's __init__ costs more).
_Pending = tuple[Mapping[str, Any] | pb.UsageEvent, Answer]
_Converted = tuple[pb.UsageEvent, Answer]


class AppenderClosed(RuntimeError):
    """append() after close()."""


class BatchingAppender:
    """Collects single events into batches and sends them; see the module docstring."""

    def __init__(
        self,
        client: LedgerClient,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_delay: float = DEFAULT_MAX_DELAY_SECONDS,
        transport: str = "append",
        max_waiting: int = DEFAULT_MAX_WAITING,
    ) -> None:
        if not 1 <= max_batch <= 10_000:
            raise ValueError(f"max_batch must be 1 to 10,000 (the ledger's batch limit), got {max_batch}")
        if max_delay < 0:
            raise ValueError(f"max_delay must not be negative, got {max_delay}")
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        self.client = client
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.transport = transport
        self.max_waiting = max(max_waiting, max_batch)
        lock = threading.RLock()
        self._changed = threading.Condition(lock)  # the queue, the unresolved count, flushing and closing changed
        self._answered = threading.Condition(lock)  # futures resolved (what AppendFuture.result waits on)
        self._waiting: list[_Pending] = []
        self._oldest = 0.0  # when the oldest waiting event arrived
        self._unresolved = 0  # appended but not yet resolved (waiting or being sent)
        self._flushing = 0
        self._closed = False
        self._sender = threading.Thread(target=self._run, name="ledger-appender", daemon=True)
        self._sender.start()

    # -- the caller's side -----------------------------------------------------------------------------------------

    def append(self, event: Mapping[str, Any] | pb.UsageEvent) -> Answer:
        """Queue one event (a billing-rules.md mapping, as in JSONL, or a proto); its future resolves once the
        ledger acknowledged it, or fails with the grpc.RpcError that refused it (or the ValueError or TypeError
        of a mapping that names no event field or gives one a value of the wrong type: the sender converts
        mappings, so the caller's thread spends microseconds here)."""
        future: Answer = AppendFuture(self._answered)
        with self._changed:
            while len(self._waiting) >= self.max_waiting and not self._closed:
                self._changed.wait()
            if self._closed:
                raise AppenderClosed("append() after close()")
            if not self._waiting:
                self._oldest = time.monotonic()
            self._waiting.append((event, future))
            self._unresolved += 1
            if len(self._waiting) >= self.max_batch or len(self._waiting) == 1:
                self._changed.notify_all()
        return future

    def flush(self, timeout: float | None = None) -> bool:
        """Send what is waiting now, and wait until every event appended so far is resolved (True) or `timeout`
        seconds passed (False)."""
        with self._changed:
            self._flushing += 1
            self._changed.notify_all()
            try:
                return self._changed.wait_for(lambda: self._unresolved == 0, timeout)
            finally:
                self._flushing -= 1

    def close(self, timeout: float | None = None) -> None:
        """Flush, then stop the sender; append() fails from then on. Idempotent."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._sender.join(timeout)

    def __enter__(self) -> BatchingAppender:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the sender thread -----------------------------------------------------------------------------------------

    def _next_batch(self) -> list[_Pending] | None:
        """Wait until a batch is due (full, old enough, flushing or closing); None once closed and drained."""
        with self._changed:
            while True:
                if self._waiting:
                    due = self._oldest + self.max_delay - time.monotonic()
                    if len(self._waiting) >= self.max_batch or due <= 0 or self._flushing or self._closed:
                        batch = self._take(self.max_batch)
                        if batch:
                            return batch
                        continue
                    self._changed.wait(due)
                elif self._closed:
                    return None
                else:
                    self._changed.wait()

    def _run(self) -> None:
        # Batch k + 1 is taken and converted here while batch k is on the wire on the transmit thread: one RPC in
        # flight at a time, so batches land in the order they were appended, each whole.
        transmit = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-appender-send")
        sending: Future[None] | None = None
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                batches = [batch]
                if self.transport == "stream":
                    while len(batches) < STREAM_BATCHES and self._batch_ready():
                        more = self._next_batch()
                        if more is None:
                            break
                        batches.append(more)
                ready = [self._converted(b) for b in batches]
                if sending is not None:
                    sending.result()
                    sending = None
                    # What arrived while the last batch was on the wire tops this one up to a full batch.
                    room = self.max_batch - len(batches[-1])
                    if room > 0:
                        ready[-1].extend(self._converted(self._take(room)))
                ready = [b for b in ready if b]
                if ready:
                    sending = transmit.submit(self._stream if self.transport == "stream" else self._send_all, ready)
        finally:
            transmit.shutdown(wait=True)

    def _converted(self, batch: list[_Pending]) -> list[_Converted]:
        """The batch's events as protos; a mapping that cannot be one fails its own future alone."""
        converted = []
        refused = []
        for event, future in batch:
            if isinstance(event, pb.UsageEvent):
                converted.append((event, future))
                continue
            try:
                converted.append((convert.raw_to_event(dict(event)), future))
            except (ValueError, TypeError) as err:
                refused.append((future, err, True))
        if refused:
            self._resolve(refused)
        return converted

    def _send_all(self, batches: list[list[_Converted]]) -> None:
        for batch in batches:
            self._send(batch)

    def _take(self, count: int) -> list[_Pending]:
        """Up to `count` waiting events, without waiting. An event whose future its caller cancelled before it
        was sent is not sent; from here on the futures cannot be cancelled: their events may be in the ledger."""
        with self._changed:
            taken = self._waiting[:count]
            del self._waiting[:count]
            self._oldest = time.monotonic()
            self._changed.notify_all()  # room for appenders blocked on max_waiting
            batch = [p for p, pending in zip(taken, append_future.start(f for _, f in taken), strict=True) if pending]
            self._unresolved -= len(taken) - len(batch)
            return batch

    def _batch_ready(self) -> bool:
        with self._changed:
            return len(self._waiting) >= self.max_batch

    def _resolve(self, outcomes: Sequence[tuple[Answer, Any, bool]]) -> None:
        """Resolve these futures with their (outcome, failed), and count them resolved for flush()."""
        append_future.resolve(self._answered, outcomes)
        with self._changed:
            self._unresolved -= len(outcomes)
            self._changed.notify_all()

    def _fail(self, batch: Iterable[_Converted], err: BaseException) -> None:
        self._resolve([(future, err, True) for _, future in batch])

    def _send(self, batch: list[_Converted]) -> None:
        """AppendEvents with the client's retries; a batch refused for good is split until the culprits are alone."""
        try:
            results = self.client.append_events([event for event, _ in batch])
        except grpc.RpcError as err:
            if len(batch) == 1 or err.code() in APPEND_RETRYABLE:  # retries exhausted: the ledger stayed away
                self._fail(batch, err)
                return
            middle = len(batch) // 2
            self._send(batch[:middle])
            self._send(batch[middle:])
            return
        except BaseException as err:  # a bug or interpreter shutdown: fail the batch rather than hang its callers
            self._fail(batch, err)
            raise
        self._resolve([(future, result, False) for (_, future), result in zip(batch, results, strict=True)])

    def _stream(self, batches: Sequence[list[_Converted]]) -> None:
        """One StreamEvents call of these batches, retried whole (R24); refused for good, they go by _send."""
        requests = [pb.StreamEventsRequest(events=[event for event, _ in batch]) for batch in batches]
        try:
            # Each attempt streams the same requests from the start: the retry resends the same event IDs.
            self.client.call(
                lambda _, **kwargs: self.client.stub.StreamEvents(iter(requests), **kwargs),
                None,
                retryable=APPEND_RETRYABLE,
            )
        except grpc.RpcError as err:
            if err.code() in APPEND_RETRYABLE:
                for batch in batches:
                    self._fail(batch, err)
                return
            for batch in batches:  # the earlier batches are in; _send answers them as duplicates (R24)
                self._send(batch)
            return
        for batch in batches:
            self._resolve([(future, None, False) for _, future in batch])
