"""The Python client library: typed calls to the ledger, with retries that keep event IDs (R24 makes them safe)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import grpc
from usageledger.v1 import ledger_pb2 as pb
from usageledger.v1 import ledger_pb2_grpc as pb_grpc

from ledger.entry import Entry, LogHead
from server import convert

T = TypeVar("T")
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


class LedgerClient:
    """A channel to one ledger server. Appends retry UNAVAILABLE and RESOURCE_EXHAUSTED with jittered backoff;
    resending the same event IDs is safe because the ledger answers duplicates with the original entry (R24)."""

    def __init__(
        self,
        target: str,
        *,
        channel: grpc.Channel | None = None,
        retries: int = 6,
        timeout: float = 30.0,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.target = target
        self.channel = channel or grpc.insecure_channel(
            target, options=[("grpc.max_send_message_length", 16 << 20), ("grpc.max_receive_message_length", 16 << 20)]
        )
        self.stub = pb_grpc.LedgerServiceStub(self.channel)
        self.retries = retries
        self.timeout = timeout
        self.metadata = tuple(metadata)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: Callable[..., T], request: Any) -> T:
        delay = 0.05
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=self.timeout, metadata=self.metadata)
            except grpc.RpcError as err:
                if err.code() not in RETRYABLE or attempt == self.retries:
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def append_events(self, events: Sequence[Mapping[str, Any] | pb.UsageEvent]) -> list[pb.AppendResult]:
        """Append one atomic batch; events are billing-rules.md mappings (as in JSONL) or proto messages."""
        request = pb.AppendEventsRequest(
            events=[e if isinstance(e, pb.UsageEvent) else convert.raw_to_event(dict(e)) for e in events]
        )
        response = self._call(self.stub.AppendEvents, request)
        return list(response.results)

    def head(self, log_id: str) -> LogHead:
        response = self._call(self.stub.GetLogHead, pb.GetLogHeadRequest(log_id=log_id))
        h = response.head
        return LogHead(h.log_id, h.size, h.head_hash, h.root_hash)

    def logs(self) -> Iterator[LogHead]:
        token = ""
        while True:
            response = self._call(self.stub.ListLogs, pb.ListLogsRequest(page_size=500, page_token=token))
            for h in response.heads:
                yield LogHead(h.log_id, h.size, h.head_hash, h.root_hash)
            token = response.next_page_token
            if not token:
                return

    def entry(self, log_id: str, sequence: int) -> Entry:
        response = self._call(self.stub.GetEntry, pb.GetEntryRequest(log_id=log_id, sequence=sequence))
        return convert.entry_from_proto(response.entry)

    def entries(self, log_id: str, start: int = 0, page_size: int = 1000) -> Iterator[Entry]:
        token = ""
        while True:
            request = pb.ListEntriesRequest(log_id=log_id, page_size=page_size, page_token=token, start_sequence=start)
            response = self._call(self.stub.ListEntries, request)
            for message in response.entries:
                yield convert.entry_from_proto(message)
            token = response.next_page_token
            if not token:
                return
