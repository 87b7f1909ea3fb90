"""LedgerService: turns RPCs into core calls; sessions and transactions stay inside the core's store calls."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
from usageledger.v1 import ledger_pb2 as pb
from usageledger.v1 import ledger_pb2_grpc as pb_grpc

from ledger.errors import EventConflict, FieldViolation, InvalidInput, LedgerError
from ledger.intake import Ledger
from ledger.ports import Appended, NewEntry
from server.composition import Billing
from wire import convert, paging
from wire.billing import backfill_to_proto


class BackfillRpcs:
    """R29's RPCs on LedgerService: the sender of past events brackets them; the billing engine records it."""

    ledger: Ledger
    billing: Billing

    def OpenBackfill(self, request: pb.OpenBackfillRequest, context: grpc.ServicerContext) -> pb.OpenBackfillResponse:
        start = convert.timestamp_to_micros(request.from_time) if request.HasField("from_time") else None
        end = convert.timestamp_to_micros(request.to_time) if request.HasField("to_time") else None
        backfill, known = self.billing.engine.open_backfill(
            request.org_id, request.backfill_id, start, end, request.reason
        )
        return pb.OpenBackfillResponse(backfill=backfill_to_proto(backfill), already_open=known)

    def CloseBackfill(
        self, request: pb.CloseBackfillRequest, context: grpc.ServicerContext
    ) -> pb.CloseBackfillResponse:
        backfill = self.billing.engine.close_backfill(request.org_id, request.backfill_id, request.reason)
        if self.billing.closer is not None:
            self.billing.closer.notify([request.org_id])  # the grace may issue the months it held back (R29)
        return pb.CloseBackfillResponse(backfill=backfill_to_proto(backfill))

    def ListBackfills(
        self, request: pb.ListBackfillsRequest, context: grpc.ServicerContext
    ) -> pb.ListBackfillsResponse:
        size = paging.page_size(request.page_size)
        try:
            start = int(paging.decode_token(request.page_token)) if request.page_token else 0
        except ValueError as err:
            raise InvalidInput([FieldViolation("page_token", "is not a token this server issued")]) from err
        backfills = self.billing.engine.books(request.org_id).backfills
        page = backfills[start : start + size]
        token = paging.encode_token(str(start + size)) if start + size < len(backfills) else ""
        return pb.ListBackfillsResponse(backfills=[backfill_to_proto(b) for b in page], next_page_token=token)


class LedgerServicer(BackfillRpcs, pb_grpc.LedgerServiceServicer):  # type: ignore[misc]
    def __init__(self, ledger: Ledger, billing: Billing) -> None:
        self.ledger = ledger
        self.billing = billing

    def _entries(self, events: Any) -> list[NewEntry]:
        """A batch of proto events validated into entries (ledger.events, the one validator); violations name the
        proto's fields."""
        try:
            return self.ledger.event_entries(convert.events_to_raw(events))
        except InvalidInput as err:
            raise convert.proto_violations(err) from err

    def _append_entries(self, entries: list[NewEntry]) -> list[Appended]:
        engine = self.billing.engine
        try:
            # R19: a new org's starter credit goes in with its first events, atomically.
            results = self.ledger.append_event_entries([*entries, *engine.starter_credits(entries)])
        except EventConflict:
            # Another batch created the org (and its starter credit) first; or a real R24 conflict, raised again.
            results = self.ledger.append_event_entries([*entries, *engine.starter_credits(entries)])
        self.billing.wake(results)  # the period closer re-evaluates the orgs just appended to (R15, R19)
        return results[: len(entries)]

    def _append(self, events: Any) -> list[Appended]:
        return self._append_entries(self._entries(events))

    def AppendEvents(self, request: pb.AppendEventsRequest, context: grpc.ServicerContext) -> pb.AppendEventsResponse:
        return convert.append_response(self._append(request.events))

    def StreamEvents(
        self, request_iterator: Iterator[pb.StreamEventsRequest], context: grpc.ServicerContext
    ) -> pb.StreamEventsResponse:
        appended = duplicates = batches = 0
        # Batch k is appended on a thread of its own while batch k + 1 is received and validated here, so the
        # store's work (SQLite steps and commits without the GIL; PostgreSQL works in its own process) overlaps
        # this thread's. One append is in flight at a time: the stream's batches still land in order, each whole.
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-append")
        pending: Future[list[Appended]] | None = None

        def finish(future: Future[list[Appended]]) -> None:
            nonlocal appended, duplicates, batches
            results = future.result()  # the append's own error, if it failed
            found = sum(1 for result in results if result.duplicate)
            duplicates += found
            appended += len(results) - found
            batches += 1

        try:
            for batch in request_iterator:
                try:
                    entries = self._entries(batch.events)
                finally:  # the batch before this one is reported (and counted) first, whatever this one holds
                    if pending is not None:
                        current, pending = pending, None
                        finish(current)
                pending = writer.submit(contextvars.copy_context().run, self._append_entries, entries)
            if pending is not None:
                current, pending = pending, None
                finish(current)
        except LedgerError as err:
            # Earlier batches of the stream stay appended; the status says which batch failed.
            err.args = (f"batch {batches} (0-based) of the stream: {err}",)
            raise
        finally:
            writer.shutdown(wait=True)  # a batch handed over is appended whole even if the stream breaks off
        return pb.StreamEventsResponse(appended=appended, duplicates=duplicates, batches=batches)

    def GetEntry(self, request: pb.GetEntryRequest, context: grpc.ServicerContext) -> pb.GetEntryResponse:
        entry = self.ledger.entry(request.log_id, paging.sequence(request.sequence, "sequence"))
        return pb.GetEntryResponse(entry=convert.entry_to_proto(entry))

    def ListEntries(self, request: pb.ListEntriesRequest, context: grpc.ServicerContext) -> pb.ListEntriesResponse:
        size = paging.page_size(request.page_size)
        if request.page_token:
            start = paging.sequence_token(request.page_token)
        else:
            start = paging.sequence(request.start_sequence, "start_sequence")
        self.ledger.store.head(request.log_id)  # NOT_FOUND for an unknown log rather than an empty page
        entries = self.ledger.store.list_entries(request.log_id, start, size + 1)
        token = paging.encode_token(str(entries[size].sequence)) if len(entries) > size else ""
        return pb.ListEntriesResponse(
            entries=[convert.entry_to_proto(e) for e in entries[:size]], next_page_token=token
        )

    def GetLogHead(self, request: pb.GetLogHeadRequest, context: grpc.ServicerContext) -> pb.GetLogHeadResponse:
        return pb.GetLogHeadResponse(head=convert.head_to_proto(self.ledger.store.head(request.log_id)))

    def ListLogs(self, request: pb.ListLogsRequest, context: grpc.ServicerContext) -> pb.ListLogsResponse:
        size = paging.page_size(request.page_size)
        after = paging.decode_token(request.page_token) if request.page_token else ""
        heads = self.ledger.store.list_logs(after, size + 1)
        token = paging.encode_token(heads[size - 1].log_id) if len(heads) > size else ""
        return pb.ListLogsResponse(heads=[convert.head_to_proto(h) for h in heads[:size]], next_page_token=token)
