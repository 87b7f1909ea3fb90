"""PricingService's messages: price-book versions (R11, R12) and the books a SetPriceBook request carries."""

from __future__ import annotations

from typing import Any

from usageledger.v1 import pricing_pb2 as ppb

from ledger.events import format_decimal
from ledger.pricebook import MONEY_CURRENCY, PriceBook
from ledger.timeutil import format_micros
from wire.convert import micros_to_timestamp, timestamp_to_micros


def price_book_to_proto(book: PriceBook) -> ppb.PriceBook:
    return ppb.PriceBook(
        version=book.version,
        effective_time=micros_to_timestamp(book.effective_from),
        rates=[
            ppb.InstanceRate(
                instance_type=name,
                flex_per_second=format_decimal(rate.flex_per_second),
                active_per_second=format_decimal(rate.active_per_second),
            )
            for name, rate in sorted(book.rates.items())
        ],
        note=book.note,
        currency_code=MONEY_CURRENCY,
    )


def price_book_request_to_raw(request: ppb.SetPriceBookRequest) -> dict[str, Any]:
    """The book a request sets, as the billing-rules.md mapping ledger.pricebook validates."""
    raw: dict[str, Any] = {
        "rates": {
            r.instance_type: {"flex_per_second": r.flex_per_second, "active_per_second": r.active_per_second}
            for r in request.rates
        },
        "note": request.note,
    }
    if request.HasField("effective_time"):
        raw["effective_from"] = format_micros(timestamp_to_micros(request.effective_time))
    return raw
