"""The lookup a ticket runs (R27): find the org, read its first entries, bring the rollups current, and answer
inside one snapshot of the store, with inclusion proofs on request."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ledger.dispute.evidence import org_of_query, plans_of
from ledger.dispute.invoices import invoices_for
from ledger.dispute.proofs import PROOFS_ON_REQUEST, prove_cited
from ledger.dispute.query import DisputeQuery
from ledger.dispute.reconstruction import reconstruct
from ledger.dispute.report import Reconstruction
from ledger.log.entry import Entry, EntryKind, org_log_id
from ledger.ports import CheckpointedSource, DisputeRollups, DisputeSource
from ledger.pricebook import PriceHistory
from ledger.tracing import traced
from ledger.usage.follower import RollupFollower


@dataclass(frozen=True)
class _FirstReads:
    """What a lookup of one org reads first, in one round trip on a SQL store: its ACCOUNT entries (R10's plans),
    its ADJUSTMENT entries (R23), the refs of its INVOICE entries (R17), and whether its rollups are current
    with the log (with the system log's size, all the price books' cache needs to know)."""

    account_entries: list[Entry]
    adjustment_entries: list[Entry]
    invoice_refs: list[tuple[int, bytes]] | None
    rollups: DisputeRollups | None  # None: the lookup reads every entry of each workload
    current: bool
    prices: PriceHistory


@traced("ledger.dispute.lookup_start", ids=("org_id",))
def _lookup_start(ledger: Any, org_id: str, rollups: DisputeRollups | None) -> _FirstReads:
    kinds = [EntryKind.ACCOUNT.value, EntryKind.ADJUSTMENT.value]  # both few: one read (ix_entries_kind)
    invoice_refs, current = None, True
    if rollups is not None:
        read, invoice_refs, applied, system_log_size = rollups.lookup_start(org_id, kinds, EntryKind.INVOICE.value)
        current = applied is not None
        prices = ledger.price_history(system_log_size)
    else:
        source: DisputeSource = ledger.store
        read = source.entries_of_kind(org_log_id(org_id), kinds)
        prices = ledger.price_history()
    return _FirstReads(
        [entry for entry in read if entry.kind is EntryKind.ACCOUNT],
        [entry for entry in read if entry.kind is EntryKind.ADJUSTMENT],
        invoice_refs,
        rollups,
        current,
        prices,
    )


@traced("ledger.dispute.reconstruct")
def reconstruct_charges(
    ledger: Any,
    query: DisputeQuery,
    *,
    with_proofs: bool = False,
    rollups: DisputeRollups | None = None,
    follower: RollupFollower | None = None,
) -> Reconstruction:
    """R27 for a ledger.intake.Ledger whose store offers the DisputeSource reads: invoices from ledger.billing when it
    exists; with `with_proofs`, inclusion proofs against each log's newest signed checkpoint when there is one.

    `rollups`, when given (the server gives the store's), rate long sessions from the usage rollups (R25) so the
    lookup reads a bounded number of entries; without them every entry of each workload touching the window is read.
    `follower` is the rollups' writer to catch them up with (the server shares its one, docs/adr/0003); without
    one the lookup uses a follower of its own over `rollups`.

    The whole lookup reads on one connection (DisputeSource.session), and all of it that follows finding the org
    runs in one snapshot (DisputeSource.snapshot): an append landing mid-lookup is in all of the answer or none of
    it. When the rollups are behind the log, they catch up first (their own transaction) and the lookup reads again
    in a new snapshot, which sees what the catch-up wrote.
    """
    query.check()
    source: DisputeSource = ledger.store
    now = ledger.clock()
    with source.session():
        org_id = org_of_query(source, query)
        if org_id is None:
            with source.snapshot():
                return _answer(ledger, query, now, None, with_proofs)
        query = dataclasses.replace(query, org_id=org_id)
        with source.snapshot():
            start = _lookup_start(ledger, org_id, rollups)
            if start.current:
                return _answer(ledger, query, now, start, with_proofs)
        assert start.rollups is not None  # only rollups can be behind
        writer = follower if follower is not None else RollupFollower(start.rollups)
        writer.catch_up(org_id, start.prices, plans_of(start.account_entries))
        with source.snapshot():
            return _answer(ledger, query, now, _lookup_start(ledger, org_id, rollups), with_proofs)


def _answer(ledger: Any, query: DisputeQuery, now: int, start: _FirstReads | None, with_proofs: bool) -> Reconstruction:
    """The reconstruction, inside the lookup's snapshot; `start` None when the query names no single org."""
    refs = start.invoice_refs if start is not None else None
    rollups = start.rollups if start is not None else None
    result = reconstruct(
        ledger.store,
        start.prices if start is not None else ledger.price_history(),
        query,
        now,
        invoices=lambda org_id: invoices_for(ledger, org_id, refs),
        index=None if rollups is None else (lambda _org_id: rollups),
        account_entries=start.account_entries if start is not None else None,
        adjustment_entries=start.adjustment_entries if start is not None else None,
    )
    if not with_proofs:
        return dataclasses.replace(result, notes=(*result.notes, PROOFS_ON_REQUEST))
    proving: CheckpointedSource = ledger.store
    proofs, notes = prove_cited(proving, result.cited())
    return dataclasses.replace(result, proofs=proofs, notes=result.notes + notes)
