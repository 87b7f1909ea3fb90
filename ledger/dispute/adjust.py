"""Corrections (R23): an ADJUSTMENT entry citing the entries a ticket found wrong, appended once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.adjustments import Adjustment
from ledger.errors import FieldViolation, InvalidInput, NotFound
from ledger.log.entry import EntryRef


def adjust_charges(
    ledger: Any,
    org_id: str,
    ticket: str,
    amount: str,
    reason: str,
    corrects: Sequence[tuple[str, int, bytes | None]],
    request_id: str | None = None,
) -> tuple[Adjustment, EntryRef, bool]:
    """R23: append an ADJUSTMENT entry citing the entries it corrects and the ticket; True when it was already there.

    A hash given with a reference must be that entry's, so a credit never cites an entry support did not look at.
    Idempotent (Ledger.append_adjustment): a resent or re-run request appends nothing new.
    """
    bad = []
    for i, (log_id, sequence, entry_hash) in enumerate(corrects):
        if entry_hash:
            try:
                stored = ledger.entry(log_id, sequence)
            except NotFound:
                continue  # append_adjustment names it
            if stored.entry_hash != entry_hash:
                bad.append(
                    FieldViolation(
                        f"corrects[{i}].entry_hash",
                        f"R23: entry {log_id}:{sequence} has hash {stored.entry_hash.hex()[:16]}…, not "
                        f"{entry_hash.hex()[:16]}…",
                    )
                )
    if bad:
        raise InvalidInput(bad)
    adjustment, appended = ledger.append_adjustment(
        org_id, ticket, amount, reason, [(log_id, seq) for log_id, seq, _ in corrects], request_id
    )
    return adjustment, EntryRef(appended.log_id, appended.sequence, appended.entry_hash), appended.duplicate
