"""Corrections (R23): an ADJUSTMENT entry credits or debits an org, citing the entries it corrects and a ticket.

Nothing is ever edited: a disputed charge stays in the ledger and the adjustment lands on the next invoice.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ledger.errors import FieldViolation, InvalidInput
from ledger.events import IDENTIFIER_RE, IDENTIFIER_RULE, format_decimal
from ledger.log.entry import EntryRef

MAX_ADJUSTMENT = Decimal("1000000")
_REF_RE = re.compile(r"^(?P<log>[A-Za-z0-9._:@/-]{1,140}):(?P<seq>\d{1,19})$")


@dataclass(frozen=True, slots=True)
class Adjustment:
    """`amount` is signed USD: negative credits the org, positive debits it (R23)."""

    org_id: str
    ticket: str
    amount: Decimal
    reason: str
    corrects: tuple[EntryRef, ...]
    sequence: int = -1
    # The store keeps one entry per key (R24 for entries): a resent AdjustCharges finds the first one, never
    # credits twice. Empty only on entries written before keys existed.
    idempotency_key: str = ""

    def body(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "ticket": self.ticket,
            "amount": format_decimal(self.amount),
            "currency": "USD",
            "reason": self.reason,
            "corrects": [
                {"log_id": r.log_id, "sequence": r.sequence, "entry_hash": r.entry_hash.hex()} for r in self.corrects
            ],
            **({"idempotency_key": self.idempotency_key} if self.idempotency_key else {}),
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any], sequence: int) -> Adjustment:
        return cls(
            org_id=body["org_id"],
            ticket=body["ticket"],
            amount=Decimal(body["amount"]),
            reason=body["reason"],
            corrects=tuple(
                EntryRef(r["log_id"], int(r["sequence"]), bytes.fromhex(r["entry_hash"])) for r in body["corrects"]
            ),
            sequence=sequence,
            idempotency_key=str(body.get("idempotency_key", "")),
        )


def adjustment_key(request_id: str | None, ticket: str, amount: Decimal, reason: str, refs: Sequence[EntryRef]) -> str:
    """The idempotency key of an adjustment: the caller's request ID, or else one derived from what it says, so
    running the same `ledgerctl support adjust` twice appends one entry (R23: a correction is made once)."""
    if request_id:
        return f"adjustment:{request_id}"
    said = json.dumps(
        [ticket, format_decimal(amount), reason, [[r.log_id, r.sequence] for r in refs]], separators=(",", ":")
    )
    return "adjustment:" + hashlib.sha256(said.encode()).hexdigest()[:40]


def parse_ref(text: str) -> tuple[str, int]:
    """`LOG:SEQ` as support staff type it, e.g. `org/acme:1042`."""
    match = _REF_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not LOG:SEQ (for example org/acme:1042)")
    return match["log"], int(match["seq"])


def validate_adjustment(
    org_id: str, ticket: str, amount: str, reason: str, refs: Sequence[tuple[str, int]]
) -> tuple[str, str, Decimal, str]:
    """Check the person-entered parts of an adjustment; raise InvalidInput naming every bad field."""
    violations: list[FieldViolation] = []
    if not IDENTIFIER_RE.match(org_id or ""):
        violations.append(FieldViolation("org_id", f"must be {IDENTIFIER_RULE}"))
    if not IDENTIFIER_RE.match(ticket or ""):
        violations.append(FieldViolation("ticket", f"R23: the support ticket ID is required ({IDENTIFIER_RULE})"))
    value = Decimal(0)
    try:
        value = Decimal(amount)
        if not value.is_finite() or value == 0 or abs(value) > MAX_ADJUSTMENT:
            raise ValueError
        if value.as_tuple().exponent < -6:  # type: ignore[operator]
            raise ValueError
    except (InvalidOperation, ValueError):
        violations.append(
            FieldViolation("amount", f"a non-zero decimal of at most {MAX_ADJUSTMENT} USD, negative to credit the org")
        )
    if not reason or len(reason) > 500:
        violations.append(FieldViolation("reason", "say why, in at most 500 characters"))
    if not refs:
        violations.append(FieldViolation("corrects", "R23: name at least one entry the adjustment corrects (LOG:SEQ)"))
    for i, (log_id, _) in enumerate(refs):
        if log_id != f"org/{org_id}":
            violations.append(FieldViolation(f"corrects[{i}]", f"must be an entry of org/{org_id}'s log"))
    if violations:
        raise InvalidInput(violations)
    return org_id, ticket, value, reason
