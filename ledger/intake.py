"""The ledger's front door: validates facts, turns them into entries and appends them through a LedgerStore."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from ledger.account import AccountChange, AccountHistory, parse_account_change
from ledger.adjustments import Adjustment, adjustment_key, validate_adjustment
from ledger.errors import FieldViolation, InvalidInput, NotFound
from ledger.events import (
    IDENTIFIER_RE,
    IDENTIFIER_RULE,
    UsageEvent,
    canonical_event_body,
    event_from_body,
    parse_event,
    well_formed_fields,
)
from ledger.log.entry import ORG_LOG_PREFIX, SYSTEM_LOG, Entry, EntryKind, EntryRef, canonical_body, org_log_id
from ledger.ports import Appended, IndexColumns, LedgerStore, NewEntry
from ledger.pricebook import PriceBook, PriceHistory, default_price_book, parse_price_book
from ledger.timeutil import Clock, format_micros, parse_rfc3339_micros, system_clock
from ledger.tracing import span

MAX_BATCH_EVENTS = 10_000
DEFAULT_PRICE_BOOK_KEY = "price-book:default"


def event_index(event: UsageEvent) -> IndexColumns:
    return IndexColumns(
        org_id=event.org_id,
        endpoint_id=event.endpoint_id or None,  # a HEARTBEAT names no endpoint or workload (R28)
        workload_id=event.workload_id or None,
        request_id=event.request_id,
        occurred_at=event.occurred_at,
        event_id=event.event_id,
    )


def derive_index(kind: EntryKind, body: Mapping[str, Any]) -> IndexColumns:
    """The index columns an entry of this kind and body must have; audit verify compares them with the stored ones."""
    if kind is EntryKind.EVENT:
        return IndexColumns(
            org_id=body.get("org_id"),
            endpoint_id=body.get("endpoint_id"),
            workload_id=body.get("workload_id"),
            request_id=body.get("request_id"),
            occurred_at=parse_rfc3339_micros(body["occurred_at"]) if "occurred_at" in body else None,
            event_id=body.get("event_id"),
        )
    # Other kinds carry an idempotency key and, for org logs, the org.
    return IndexColumns(org_id=body.get("org_id"), event_id=body.get("idempotency_key"))


class Ledger:
    """Appends validated facts and answers reads; holds no state that the store cannot rebuild."""

    def __init__(self, store: LedgerStore, *, clock: Clock = system_clock) -> None:
        self.store = store
        self.clock = clock
        self._prices_lock = threading.Lock()
        self._prices: PriceHistory | None = None
        self._prices_size = -1
        self._ensure_genesis()

    # -- price books (R11, R12) -------------------------------------------------------------------

    def _ensure_genesis(self) -> None:
        """A new ledger starts with the default price book in the system log (R11); idempotent across processes."""
        book = default_price_book()
        body = {**book.body(), "idempotency_key": DEFAULT_PRICE_BOOK_KEY}
        self.store.append([self._system_entry(EntryKind.PRICE_BOOK, body)])

    def _system_entry(self, kind: EntryKind, body: Mapping[str, Any]) -> NewEntry:
        return NewEntry(SYSTEM_LOG, kind, canonical_body(body), derive_index(kind, body))

    def price_history(self, system_log_size: int | None = None) -> PriceHistory:
        """Every price-book version from the system log, re-read only when the system log has grown. A caller that
        has just read the system log's size (a dispute lookup, with its rollups' state) passes it."""
        size = self.store.head(SYSTEM_LOG).size if system_log_size is None else system_log_size
        with self._prices_lock:
            if self._prices is None or size != self._prices_size:
                with span("ledger.price_history.load", system_log_size=size):
                    versions = [
                        PriceBook.from_body(entry.body_json(), entry.sequence)
                        for entry in self.store.iter_entries(SYSTEM_LOG, 0, size)
                        if entry.kind is EntryKind.PRICE_BOOK
                    ]
                self._prices = PriceHistory(versions)
                self._prices_size = size
            return self._prices

    def _admission_prices(self) -> PriceHistory:
        """The price history R11's admission check reads: the one last read, without reading the system log again.

        Stale is safe here because adding a version never takes a rate away from any instant: set_price_book stores
        each version whole, as the rates in force at its effective_from plus the update, so whatever an older read
        prices at an instant, the log still prices then. A batch accepted on it would be accepted on a fresh read;
        a batch it would refuse is checked again on a fresh read (validate_events) before it is refused. So single
        events at control-plane rates skip a read of the system log's head per call (issue #26)."""
        prices = self._prices
        return prices if prices is not None else self.price_history()

    # -- usage events ---------------------------------------------------------------------------

    def validate_events(self, raw_events: Sequence[Mapping[str, Any]], *, prefix: str = "events") -> list[UsageEvent]:
        """Parse every event, collecting every bad field of every event before refusing the batch."""
        if len(raw_events) > MAX_BATCH_EVENTS:
            raise InvalidInput([FieldViolation(prefix, f"a batch holds at most {MAX_BATCH_EVENTS} events")])
        prices = self.price_history()
        now = self.clock()
        parsed: list[UsageEvent] = []
        violations: list[FieldViolation] = []
        for i, raw in enumerate(raw_events):
            try:
                event = parse_event(raw, now_micros=now, known_instance_type=prices.knows, prefix=f"{prefix}[{i}].")
            except InvalidInput as err:
                violations.extend(err.violations)
                continue
            if event.instance_type and not prices.prices_at(event.instance_type, event.occurred_at):
                violations.append(_unpriced_at(prices, event, f"{prefix}[{i}].instance_type"))
            parsed.append(event)
        if violations:
            raise InvalidInput(violations)
        return parsed

    def append_events(self, raw_events: Sequence[Mapping[str, Any]]) -> list[Appended]:
        """Append a batch atomically: all events (duplicates answered with their original entry, R24) or none."""
        return self.append_event_entries(self.event_entries(raw_events))

    def event_entries(self, raw_events: Sequence[Mapping[str, Any]]) -> list[NewEntry]:
        """append_events' first half: validate a batch into its entries (InvalidInput names every bad field)."""
        with span("ledger.validate_events", events=len(raw_events)):
            return self._event_entries(raw_events)

    def append_event_entries(self, new: Sequence[NewEntry]) -> list[Appended]:
        """append_events' second half: append entries event_entries built, atomically."""
        with span("ledger.store.append", entries=len(new)):
            return self.store.append(new)

    def _event_entries(self, raw_events: Sequence[Mapping[str, Any]]) -> list[NewEntry]:
        """The entries of a batch of events, or InvalidInput naming every bad field of every event.

        Almost every batch is well formed throughout: its events go from their checked fields straight to their
        canonical bodies and index columns. At the first event that is not, validate_events runs over the whole
        batch, so a refusal names every violation and an accepted batch is built exactly as before.
        """
        if len(raw_events) > MAX_BATCH_EVENTS:
            raise InvalidInput([FieldViolation("events", f"a batch holds at most {MAX_BATCH_EVENTS} events")])
        now = self.clock()
        prices = self._admission_prices()  # a refusal below is decided by validate_events on a fresh read
        knows = prices.known_instance_types.__contains__
        prices_at = prices.prices_at
        event = EntryKind.EVENT
        new: list[NewEntry] = []
        append = new.append
        for raw in raw_events:
            fields = well_formed_fields(raw, now, knows)
            # R11 at the event's occurred_at: a type priced only by a later version is refused here, not at the
            # first read that rates it (which would fail for good once the event is in the log).
            if fields is None or (fields[5] and not prices_at(fields[5], fields[7])):
                return [
                    NewEntry(org_log_id(e.org_id), event, canonical_body(e.body()), event_index(e))
                    for e in self.validate_events(raw_events)
                ]
            # fields: UsageEvent's, in order; IndexColumns(org, endpoint, workload, request, occurred_at, event_id).
            index = IndexColumns(fields[1], fields[2], fields[3], fields[11], fields[7], fields[0])
            append(NewEntry(ORG_LOG_PREFIX + fields[1], event, canonical_event_body(fields), index))
        return new

    # -- reads ------------------------------------------------------------------------------------

    def entry(self, log_id: str, sequence: int) -> Entry:
        return self.store.get_entry(log_id, sequence)

    def events_of(self, org_id: str, stop: int | None = None) -> list[tuple[UsageEvent, int]]:
        """Every usage event of an org (of its first `stop` entries, when given) with its sequence number, streamed
        from the org's log."""
        try:
            self.store.head(org_log_id(org_id))
        except NotFound:
            return []
        return [
            (event_from_body(json.loads(entry.body)), entry.sequence)
            for entry in self.store.iter_entries(org_log_id(org_id), 0, stop)
            if entry.kind is EntryKind.EVENT
        ]

    # -- price books and account settings (R10, R11, R12, R15, R18, R20) ---------------------------------------

    def set_price_book(self, raw: Mapping[str, Any]) -> tuple[PriceBook, Appended]:
        """R12: append a price-book version (a PRICE_BOOK entry in the system log) in force from `effective_from`.

        Each version is stored whole: the update's rates over the book in force at its `effective_from`, so an
        update can add an instance type (R11) or change one rate without restating the table, and an auditor
        reads every version's complete rates from one entry.
        """
        update = parse_price_book(raw, default_effective_from=self.clock())
        try:
            base = dict(self.price_history().at(update.effective_from).rates)
        except NotFound:
            base = {}
        book = PriceBook(update.effective_from, {**base, **update.rates}, note=update.note)
        [appended] = self.store.append([self._system_entry(EntryKind.PRICE_BOOK, book.body())])
        return PriceBook(book.effective_from, book.rates, appended.sequence, book.note), appended

    def set_account(self, org_id: str, raw: Mapping[str, Any]) -> tuple[AccountChange, Appended]:
        """Append an ACCOUNT entry to the org's log changing the settings it names from `effective_from`."""
        _check_org(org_id)
        change = parse_account_change(raw, default_effective_from=self.clock())
        body = change.body(org_id)
        [appended] = self.store.append(
            [
                NewEntry(
                    org_log_id(org_id), EntryKind.ACCOUNT, canonical_body(body), derive_index(EntryKind.ACCOUNT, body)
                )
            ]
        )
        return AccountChange.from_body(body, appended.sequence), appended

    def account_history(self, org_id: str) -> AccountHistory:
        return AccountHistory(
            tuple(
                AccountChange.from_body(entry.body_json(), entry.sequence)
                for entry in self._entries_of_kind(org_log_id(org_id), EntryKind.ACCOUNT)
            )
        )

    # -- corrections (R23) ------------------------------------------------------------------------

    def append_adjustment(
        self,
        org_id: str,
        ticket: str,
        amount: str,
        reason: str,
        refs: Sequence[tuple[str, int]],
        request_id: str | None = None,
    ) -> tuple[Adjustment, Appended]:
        """Append an ADJUSTMENT entry citing the entries it corrects (each must exist) and the support ticket.

        Idempotent: the same request ID, or with none the same ticket, amount, reason and entries, returns the entry
        already appended (`Appended.duplicate`)."""
        org_id, ticket, value, reason = validate_adjustment(org_id, ticket, amount, reason, refs)
        if request_id is not None and request_id != "" and not IDENTIFIER_RE.match(request_id):
            raise InvalidInput([FieldViolation("request_id", f"must be {IDENTIFIER_RULE}")])
        corrected: list[EntryRef] = []
        violations: list[FieldViolation] = []
        for i, (log_id, sequence) in enumerate(refs):
            try:
                entry = self.store.get_entry(log_id, sequence)
            except NotFound:
                violations.append(FieldViolation(f"corrects[{i}]", f"there is no entry {log_id}:{sequence}"))
                continue
            corrected.append(EntryRef(entry.log_id, entry.sequence, entry.entry_hash))
        if violations:
            raise InvalidInput(violations)
        key = adjustment_key(request_id, ticket, value, reason, corrected)
        adjustment = Adjustment(org_id, ticket, value, reason, tuple(corrected), idempotency_key=key)
        body = adjustment.body()
        [appended] = self.store.append(
            [
                NewEntry(
                    org_log_id(org_id),
                    EntryKind.ADJUSTMENT,
                    canonical_body(body),
                    derive_index(EntryKind.ADJUSTMENT, body),
                )
            ]
        )
        return Adjustment.from_body(body, appended.sequence), appended

    def adjustments(self, org_id: str) -> list[Adjustment]:
        return [
            Adjustment.from_body(entry.body_json(), entry.sequence)
            for entry in self._entries_of_kind(org_log_id(org_id), EntryKind.ADJUSTMENT)
        ]

    def _entries_of_kind(self, log_id: str, kind: EntryKind) -> list[Entry]:
        try:
            return self.store.entries_of_kind(log_id, [kind.value])
        except NotFound:
            return []


def _unpriced_at(prices: PriceHistory, event: UsageEvent, field: str) -> FieldViolation:
    """R11's refusal of an event whose instance type has no rate in the version in force at its occurred_at."""
    try:
        in_force: int | None = prices.at(event.occurred_at).version
    except NotFound:  # no version at all yet in force then: the refusal says so by naming none
        in_force = None
    first = prices.first_priced(event.instance_type)
    return FieldViolation(
        field,
        f"R11: {event.instance_type!r} has no rate in the price book in force at its occurred_at "
        f"{format_micros(event.occurred_at)}"
        + (f" (v{in_force})" if in_force is not None else "")
        + (f"; its first rate takes effect {format_micros(first)}" if first is not None else "")
        + "; nothing was appended",
    )


def _check_org(org_id: str) -> None:
    if not isinstance(org_id, str) or not IDENTIFIER_RE.match(org_id):
        raise InvalidInput([FieldViolation("org_id", f"must be {IDENTIFIER_RULE}")])
