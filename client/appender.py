"""A batching appender for control planes: one event at a time in, batches of up to 1,000 out (issue #26).

    with BatchingAppender(LedgerClient("127.0.0.1:50051")) as appender:
        future = appender.append({"event_id": "ev-1", "org_id": "acme", ...})
        result = future.result()   # the ledger's AppendResult: log, sequence, entry hash, duplicate (R24)

`append` may be called from any number of threads. A sender thread sends what is waiting as one batch once
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
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from usageledger.v1 import ledger_pb2 as pb

from client.ledger_client import APPEND_RETRYABLE, LedgerClient
from wire import convert

DEFAULT_MAX_BATCH = 1000
DEFAULT_MAX_DELAY_SECONDS = 0.005
# append() blocks while this many events wait unsent: a stalled ledger slows the caller instead of filling memory.
DEFAULT_MAX_WAITING = 100_000
TRANSPORTS = ("append", "stream")
# A StreamEvents call carries at most this many batches before it is answered and the next one opened.
STREAM_BATCHES = 8


@dataclass(frozen=True, slots=True)
class _Pending:
    event: Mapping[str, Any] | pb.UsageEvent
    future: Future[pb.AppendResult | None]


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
        self._changed = threading.Condition()
        self._waiting: list[_Pending] = []
        self._oldest = 0.0  # when the oldest waiting event arrived
        self._unresolved = 0  # appended but not yet resolved (waiting or being sent)
        self._flushing = 0
        self._closed = False
        self._sender = threading.Thread(target=self._run, name="ledger-appender", daemon=True)
        self._sender.start()

    # -- the caller's side -----------------------------------------------------------------------------------------

    def append(self, event: Mapping[str, Any] | pb.UsageEvent) -> Future[pb.AppendResult | None]:
        """Queue one event (a billing-rules.md mapping, as in JSONL, or a proto); its future resolves once the
        ledger acknowledged it, or fails with the grpc.RpcError that refused it (or the ValueError or TypeError
        of a mapping that names no event field or gives one a value of the wrong type: the sender converts
        mappings, so the caller's thread spends microseconds here)."""
        future: Future[pb.AppendResult | None] = Future()
        with self._changed:
            while len(self._waiting) >= self.max_waiting and not self._closed:
                self._changed.wait()
            if self._closed:
                raise AppenderClosed("append() after close()")
            if not self._waiting:
                self._oldest = time.monotonic()
            self._waiting.append(_Pending(event, future))
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

    def _converted(self, batch: list[_Pending]) -> list[tuple[pb.UsageEvent, _Pending]]:
        """The batch's events as protos; a mapping that cannot be one fails its own future alone."""
        converted = []
        for pending in batch:
            event = pending.event
            if isinstance(event, pb.UsageEvent):
                converted.append((event, pending))
                continue
            try:
                converted.append((convert.raw_to_event(dict(event)), pending))
            except (ValueError, TypeError) as err:
                _fail(pending.future, err)
                self._resolved(1)
        return converted

    def _send_all(self, batches: list[list[tuple[pb.UsageEvent, _Pending]]]) -> None:
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
            batch = [p for p in taken if p.future.set_running_or_notify_cancel()]
            self._unresolved -= len(taken) - len(batch)
            return batch

    def _batch_ready(self) -> bool:
        with self._changed:
            return len(self._waiting) >= self.max_batch

    def _resolved(self, count: int) -> None:
        with self._changed:
            self._unresolved -= count
            self._changed.notify_all()

    def _send(self, batch: list[tuple[pb.UsageEvent, _Pending]]) -> None:
        """AppendEvents with the client's retries; a batch refused for good is split until the culprits are alone."""
        try:
            results = self.client.append_events([event for event, _ in batch])
        except grpc.RpcError as err:
            if len(batch) == 1 or err.code() in APPEND_RETRYABLE:  # retries exhausted: the ledger stayed away
                for _, pending in batch:
                    _fail(pending.future, err)
                self._resolved(len(batch))
                return
            middle = len(batch) // 2
            self._send(batch[:middle])
            self._send(batch[middle:])
            return
        except BaseException as err:  # a bug or interpreter shutdown: fail the batch rather than hang its callers
            for _, pending in batch:
                _fail(pending.future, err)
            self._resolved(len(batch))
            raise
        for (_, pending), result in zip(batch, results, strict=True):
            _succeed(pending.future, result)
        self._resolved(len(batch))

    def _stream(self, batches: Sequence[list[tuple[pb.UsageEvent, _Pending]]]) -> None:
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
                    for _, pending in batch:
                        _fail(pending.future, err)
                    self._resolved(len(batch))
                return
            for batch in batches:  # the earlier batches are in; _send answers them as duplicates (R24)
                self._send(batch)
            return
        for batch in batches:
            for _, pending in batch:
                _succeed(pending.future, None)
            self._resolved(len(batch))


def _succeed(future: Future[pb.AppendResult | None], result: pb.AppendResult | None) -> None:
    future.set_result(result)


def _fail(future: Future[pb.AppendResult | None], err: BaseException) -> None:
    future.set_exception(err)
