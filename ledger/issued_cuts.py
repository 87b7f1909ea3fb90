"""R12's guard: the cut instants of issued invoices, and the check that no price version takes effect before one."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ledger.errors import LedgerError
from ledger.log.entry import org_of_log
from ledger.timeutil import format_micros, parse_rfc3339_micros


@dataclass(frozen=True, slots=True)
class IssuedCut:
    """The latest cut instant (R17) of one log's issued invoices, and the INVOICE entry that holds it."""

    log_id: str
    cut: int
    sequence: int


class PriceVersionBeforeCut(LedgerError):
    """R12: a price version would take effect before the cut instant of an issued invoice; nothing was appended."""

    reason = "PRICE_VERSION_BEFORE_INVOICE_CUT"

    def __init__(self, effective_from: int, latest: IssuedCut) -> None:
        self.effective_from = effective_from
        self.latest = latest
        org = org_of_log(latest.log_id) or latest.log_id
        super().__init__(
            f"R12: a price version may not take effect before the cut instant of an issued invoice; this one would "
            f"take effect {format_micros(effective_from)}, but org {org!r}'s invoice (entry {latest.log_id}:"
            f"{latest.sequence}) is cut at {format_micros(latest.cut)}. Nothing was appended. Take effect at or "
            "after that instant, and correct a past price with an adjustment (R23) citing the invoice"
        )


def invoice_cut(body: bytes) -> int:
    """The cut instant of an INVOICE entry: the end of the period it covers (R17: usage that starts before it)."""
    return parse_rfc3339_micros(json.loads(body)["period"]["end"])


def keep_latest_cut(latest: dict[str, tuple[int, int]], log_id: str, body: bytes, sequence: int) -> None:
    """Note an INVOICE entry's cut in `latest` (log id -> (cut, sequence)) when it is the log's latest so far:
    what an append or an import then records for R12's guard."""
    cut = invoice_cut(body)
    if log_id not in latest or cut >= latest[log_id][0]:
        latest[log_id] = (cut, sequence)


def price_version_start(body: bytes) -> int:
    """When a PRICE_BOOK entry's version takes effect (R12)."""
    return parse_rfc3339_micros(json.loads(body)["effective_from"])


def check_price_version(effective_from: int, latest: IssuedCut | None) -> None:
    """R12: refuse a version taking effect before the latest issued cut. At the cut itself it is allowed: an
    invoice holds only usage that starts before its cut, so no invoiced unit changes price."""
    if latest is not None and effective_from < latest.cut:
        raise PriceVersionBeforeCut(effective_from, latest)
