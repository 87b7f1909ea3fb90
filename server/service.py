"""LedgerService: turns RPCs into core calls; sessions and transactions stay inside the core's store calls."""

from __future__ import annotations

import base64
import contextvars
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
from usageledger.v1 import ledger_pb2 as pb
from usageledger.v1 import ledger_pb2_grpc as pb_grpc

from ledger.billing.backfills import Backfill
from ledger.errors import EventConflict, FieldViolation, InvalidInput, LedgerError
from ledger.intake import Ledger
from ledger.ports import Appended, NewEntry
from server.billing_service import closer_for, engine_for, wake_billing
from server.errors import abort
from wire import convert

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def _page_size(requested: int, field: str = "page_size") -> int:
    if requested < 0:
        raise InvalidInput([FieldViolation(field, "must not be negative")])
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _sequence(value: int, field: str) -> int:
    """A sequence number the store can hold (a signed 64-bit column); beyond it no entry exists or ever will."""
    if not 0 <= value < 2**63:
        raise InvalidInput([FieldViolation(field, f"must be a sequence number from 0 to {2**63 - 1}")])
    return value


def _decode_token(token: str, field: str = "page_token") -> str:
    """Page tokens are opaque to clients: base64 of the last key returned."""
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidInput([FieldViolation(field, "is not a page token this server issued")]) from err


def _encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def backfill_to_proto(backfill: Backfill) -> pb.Backfill:
    message = pb.Backfill(
        org_id=backfill.org_id,
        backfill_id=backfill.backfill_id,
        from_time=convert.micros_to_timestamp(backfill.start),
        to_time=convert.micros_to_timestamp(backfill.end),
        reason=backfill.reason,
        open=backfill.is_open,
        open_time=convert.micros_to_timestamp(backfill.opened.at),
        open_sequence=max(backfill.opened.sequence, 0),
    )
    if backfill.closed is not None:
        message.close_time.CopyFrom(convert.micros_to_timestamp(backfill.closed.at))
        message.close_reason = backfill.closed.reason
        message.close_sequence = max(backfill.closed.sequence, 0)
    return message


class BackfillRpcs:
    """R29's RPCs on LedgerService: the sender of past events brackets them; the billing engine records it."""

    ledger: Ledger

    def OpenBackfill(self, request: pb.OpenBackfillRequest, context: grpc.ServicerContext) -> pb.OpenBackfillResponse:
        try:
            start = convert.timestamp_to_micros(request.from_time) if request.HasField("from_time") else None
            end = convert.timestamp_to_micros(request.to_time) if request.HasField("to_time") else None
            backfill, known = engine_for(self.ledger).open_backfill(
                request.org_id, request.backfill_id, start, end, request.reason
            )
        except LedgerError as err:
            abort(context, err)
            raise
        return pb.OpenBackfillResponse(backfill=backfill_to_proto(backfill), already_open=known)

    def CloseBackfill(
        self, request: pb.CloseBackfillRequest, context: grpc.ServicerContext
    ) -> pb.CloseBackfillResponse:
        try:
            backfill = engine_for(self.ledger).close_backfill(request.org_id, request.backfill_id, request.reason)
        except LedgerError as err:
            abort(context, err)
            raise
        closer = closer_for(self.ledger)
        if closer is not None:
            closer.notify([request.org_id])  # the grace may issue the months it held back (R29)
        return pb.CloseBackfillResponse(backfill=backfill_to_proto(backfill))

    def ListBackfills(
        self, request: pb.ListBackfillsRequest, context: grpc.ServicerContext
    ) -> pb.ListBackfillsResponse:
        try:
            size = _page_size(request.page_size)
            start = int(_decode_token(request.page_token)) if request.page_token else 0
            backfills = engine_for(self.ledger).books(request.org_id).backfills
        except (LedgerError, ValueError) as err:
            if isinstance(err, ValueError):
                err = InvalidInput([FieldViolation("page_token", "is not a token this server issued")])
            abort(context, err)
            raise
        page = backfills[start : start + size]
        token = _encode_token(str(start + size)) if start + size < len(backfills) else ""
        return pb.ListBackfillsResponse(backfills=[backfill_to_proto(b) for b in page], next_page_token=token)


class LedgerServicer(BackfillRpcs, pb_grpc.LedgerServiceServicer):  # type: ignore[misc]
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def _entries(self, events: Any) -> list[NewEntry]:
        """A batch of proto events validated into entries; violations name the proto's fields."""
        event_to_raw = convert.event_to_raw
        raw = [event_to_raw(e) for e in events]
        try:
            return self.ledger.event_entries(raw)
        except InvalidInput as err:
            raise InvalidInput(
                [FieldViolation(convert.proto_field(v.field), v.description) for v in err.violations]
            ) from err

    def _append_entries(self, entries: list[NewEntry]) -> list[Appended]:
        engine = engine_for(self.ledger)
        try:
            # R19: a new org's starter credit goes in with its first events, atomically.
            results = self.ledger.append_event_entries([*entries, *engine.starter_credits(entries)])
        except EventConflict:
            # Another batch created the org (and its starter credit) first; or a real R24 conflict, raised again.
            results = self.ledger.append_event_entries([*entries, *engine.starter_credits(entries)])
        wake_billing(self.ledger, results)  # the period closer re-evaluates the orgs just appended to (R15, R19)
        return results[: len(entries)]

    def _append(self, events: Any) -> list[Appended]:
        return self._append_entries(self._entries(events))

    def AppendEvents(self, request: pb.AppendEventsRequest, context: grpc.ServicerContext) -> pb.AppendEventsResponse:
        try:
            return convert.append_response(self._append(request.events))
        except LedgerError as err:
            abort(context, err)
            raise

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
            abort(context, err)
            raise
        finally:
            writer.shutdown(wait=True)  # a batch handed over is appended whole even if the stream breaks off
        return pb.StreamEventsResponse(appended=appended, duplicates=duplicates, batches=batches)

    def GetEntry(self, request: pb.GetEntryRequest, context: grpc.ServicerContext) -> pb.GetEntryResponse:
        try:
            return pb.GetEntryResponse(
                entry=convert.entry_to_proto(self.ledger.entry(request.log_id, _sequence(request.sequence, "sequence")))
            )
        except LedgerError as err:
            abort(context, err)
            raise

    def ListEntries(self, request: pb.ListEntriesRequest, context: grpc.ServicerContext) -> pb.ListEntriesResponse:
        try:
            size = _page_size(request.page_size)
            if request.page_token:
                start = _sequence(int(_decode_token(request.page_token)), "page_token")
            else:
                start = _sequence(request.start_sequence, "start_sequence")
            self.ledger.store.head(request.log_id)  # NOT_FOUND for an unknown log rather than an empty page
            entries = self.ledger.store.list_entries(request.log_id, start, size + 1)
        except LedgerError as err:
            abort(context, err)
            raise
        except ValueError:
            abort(context, InvalidInput([FieldViolation("page_token", "is not a page token this server issued")]))
            raise
        token = _encode_token(str(entries[size].sequence)) if len(entries) > size else ""
        return pb.ListEntriesResponse(
            entries=[convert.entry_to_proto(e) for e in entries[:size]], next_page_token=token
        )

    def GetLogHead(self, request: pb.GetLogHeadRequest, context: grpc.ServicerContext) -> pb.GetLogHeadResponse:
        try:
            return pb.GetLogHeadResponse(head=convert.head_to_proto(self.ledger.store.head(request.log_id)))
        except LedgerError as err:
            abort(context, err)
            raise

    def ListLogs(self, request: pb.ListLogsRequest, context: grpc.ServicerContext) -> pb.ListLogsResponse:
        try:
            size = _page_size(request.page_size)
            after = _decode_token(request.page_token) if request.page_token else ""
            heads = self.ledger.store.list_logs(after, size + 1)
        except LedgerError as err:
            abort(context, err)
            raise
        token = _encode_token(heads[size - 1].log_id) if len(heads) > size else ""
        return pb.ListLogsResponse(heads=[convert.head_to_proto(h) for h in heads[:size]], next_page_token=token)
