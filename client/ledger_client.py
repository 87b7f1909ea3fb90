"""The Python client library: typed calls to the ledger, with retries that keep event IDs (R24 makes them safe)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from usageledger.v1 import ledger_pb2 as pb
from usageledger.v1 import ledger_pb2_grpc as pb_grpc

from ledger.log.entry import Entry, LogHead
from wire import convert
from wire.private_files import read_private_file

T = TypeVar("T")
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
# An append whose deadline passed may still have committed (the review found 97 of 97 had): resending the same
# event IDs is safe because R24 answers the ones already in the ledger with their original entries.
APPEND_RETRYABLE = RETRYABLE | {grpc.StatusCode.DEADLINE_EXCEEDED}
# However many attempts are left, no retry starts later than this after the first attempt.
DEFAULT_RETRY_BUDGET_SECONDS = 120.0
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", 16 << 20),
    ("grpc.max_receive_message_length", 16 << 20),
    # gRPC's reconnect backoff grows to 120 s by default: after a long outage a long-lived client would keep
    # failing fast for up to two minutes after the server came back. Cap it so a restarted server is found soon.
    ("grpc.max_reconnect_backoff_ms", 5000),
)


@dataclass(frozen=True)
class Connection:
    """How a client proves itself and checks the server: an API key and TLS files, each optional.

    `from_env` reads LEDGER_API_KEY, LEDGER_TLS_CA, LEDGER_TLS_CERT and LEDGER_TLS_KEY (what ledgerctl's
    --api-key and --tls-* options set). Any TLS file turns TLS on; without a CA the system's roots are trusted.
    """

    api_key: str | None = field(default=None, repr=False)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Connection:
        return cls(
            environ.get("LEDGER_API_KEY") or None,
            environ.get("LEDGER_TLS_CA") or None,
            environ.get("LEDGER_TLS_CERT") or None,
            environ.get("LEDGER_TLS_KEY") or None,
        )

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca or self.tls_cert or self.tls_key)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """TLS credentials from the files; OSError if one cannot be read, ValueError if cert and key are unpaired."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("a client certificate needs its key and a key its certificate (--tls-cert, --tls-key)")
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.tls_ca).read_bytes() if self.tls_ca else None,
            private_key=read_private_file(self.tls_key, "TLS client key") if self.tls_key else None,
            certificate_chain=Path(self.tls_cert).read_bytes() if self.tls_cert else None,
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()


class LedgerClient:
    """A channel to one ledger server. Calls retry UNAVAILABLE and RESOURCE_EXHAUSTED with jittered exponential
    backoff, appends DEADLINE_EXCEEDED too: resending the same event IDs is safe because the ledger answers
    duplicates with the original entry (R24). Retries stop after `retries` or once `retry_budget` seconds have
    passed since the first attempt, whichever comes first; the last error is raised."""

    def __init__(
        self,
        target: str,
        *,
        channel: grpc.Channel | None = None,
        retries: int = 6,
        timeout: float = 30.0,
        metadata: Sequence[tuple[str, str]] = (),
        connection: Connection | None = None,
        retry_budget: float = DEFAULT_RETRY_BUDGET_SECONDS,
    ) -> None:
        """`connection` (default: Connection.from_env()) gives the API key and TLS files; `metadata` is sent too."""
        self.target = target
        connection = connection if connection is not None else Connection.from_env()
        if channel is None and connection.tls:
            channel = grpc.secure_channel(target, connection.channel_credentials(), options=list(CHANNEL_OPTIONS))
        self.channel = channel or grpc.insecure_channel(target, options=list(CHANNEL_OPTIONS))
        self.stub = pb_grpc.LedgerServiceStub(self.channel)
        self.retries = retries
        self.retry_budget = retry_budget
        self.timeout = timeout
        self.metadata = (*connection.metadata(), *metadata)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def call(self, method: Callable[..., T], request: Any, *, retryable: frozenset[grpc.StatusCode] = RETRYABLE) -> T:
        """Call any stub method on this channel with the client's deadline, metadata and retry policy (appends
        pass APPEND_RETRYABLE: they may also retry DEADLINE_EXCEEDED, R24)."""
        return self._call(method, request, retryable)

    def _call(self, method: Callable[..., T], request: Any, retryable: frozenset[grpc.StatusCode] = RETRYABLE) -> T:
        delay = 0.05
        give_up_at = time.monotonic() + self.retry_budget
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=self.timeout, metadata=self.metadata)
            except grpc.RpcError as err:
                pause = delay * (0.5 + random.random())
                if err.code() not in retryable or attempt == self.retries or time.monotonic() + pause > give_up_at:
                    raise
                time.sleep(pause)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def append_events(self, events: Sequence[Mapping[str, Any] | pb.UsageEvent]) -> list[pb.AppendResult]:
        """Append one atomic batch; events are billing-rules.md mappings (as in JSONL) or proto messages."""
        request = pb.AppendEventsRequest(
            events=[e if isinstance(e, pb.UsageEvent) else convert.raw_to_event(dict(e)) for e in events]
        )
        response = self._call(self.stub.AppendEvents, request, APPEND_RETRYABLE)
        return list(response.results)

    def head(self, log_id: str) -> LogHead:
        response = self._call(self.stub.GetLogHead, pb.GetLogHeadRequest(log_id=log_id))
        return convert.head_from_proto(response.head)

    def logs(self) -> Iterator[LogHead]:
        token = ""
        while True:
            response = self._call(self.stub.ListLogs, pb.ListLogsRequest(page_size=500, page_token=token))
            yield from (convert.head_from_proto(h) for h in response.heads)
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
