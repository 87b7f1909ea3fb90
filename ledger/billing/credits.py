"""Credits (R16): CREDIT entries granting an org an amount, and how invoices draw them down, soonest-expiring first."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ledger.billing.cents import CURRENCY, cents_text, parse_usd
from ledger.errors import FieldViolation, InvalidInput
from ledger.events import IDENTIFIER_RE, IDENTIFIER_RULE
from ledger.rating.money import ZERO, exact_sum
from ledger.timeutil import format_micros, parse_rfc3339_micros

MAX_CREDIT = Decimal("1000000")
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class CreditGrant:
    """One CREDIT entry. Available to invoices issued at an instant in [granted_at, expires_at) (R16)."""

    org_id: str
    amount: Decimal
    reason: str
    granted_at: int
    expires_at: int | None
    request_id: str
    sequence: int = -1

    def body(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "idempotency_key": f"credit:{self.request_id}",
            "amount": cents_text(self.amount),
            "currency": CURRENCY,
            "reason": self.reason,
            "granted_at": format_micros(self.granted_at),
            "expires_at": format_micros(self.expires_at) if self.expires_at is not None else None,
            "rule": "R16",
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any], sequence: int) -> CreditGrant:
        expires = body.get("expires_at")
        return cls(
            org_id=body["org_id"],
            amount=Decimal(body["amount"]),
            reason=body["reason"],
            granted_at=parse_rfc3339_micros(body["granted_at"]),
            expires_at=parse_rfc3339_micros(expires) if expires else None,
            request_id=str(body["idempotency_key"]).removeprefix("credit:"),
            sequence=sequence,
        )

    def available_at(self, instant: int) -> bool:
        """R16: granted by `instant` and not expired at it (a credit expiring at X is not used at X or later)."""
        return self.granted_at <= instant and (self.expires_at is None or instant < self.expires_at)

    def expired_at(self, instant: int) -> bool:
        return self.expires_at is not None and instant >= self.expires_at


@dataclass(frozen=True, slots=True)
class CreditApplication:
    """Part of a grant (its entry sequence) applied to an invoice (R16)."""

    credit_sequence: int
    amount: Decimal

    def body(self) -> dict[str, Any]:
        return {"credit_sequence": self.credit_sequence, "amount": cents_text(self.amount)}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> CreditApplication:
        return cls(int(body["credit_sequence"]), Decimal(body["amount"]))


@dataclass(frozen=True, slots=True)
class CreditBalance:
    """A grant with what invoices used of it and what is left (R16: unused credit carries over)."""

    grant: CreditGrant
    used: Decimal
    left: Decimal
    expired: bool

    @property
    def usable(self) -> Decimal:
        """What an invoice issued now could still draw: nothing once expired (R16)."""
        return ZERO if self.expired else self.left


def parse_credit_grant(
    org_id: str, amount: str, reason: str, expires_at: int | None, request_id: str, *, now: int
) -> CreditGrant:
    """Check a grant as support staff enter it; every bad field is named."""
    violations: list[FieldViolation] = []
    if not IDENTIFIER_RE.match(org_id or ""):
        violations.append(FieldViolation("org_id", f"must be {IDENTIFIER_RULE}"))
    value = parse_usd(amount, "amount", violations, rule="R16")
    if value is not None and value > MAX_CREDIT:
        violations.append(FieldViolation("amount", f"R16: a single grant is at most ${MAX_CREDIT}"))
    reason = (reason or "").strip()
    if not reason or len(reason) > MAX_REASON:
        violations.append(
            FieldViolation("reason", f"R16: say why the credit is granted, in at most {MAX_REASON} characters")
        )
    if expires_at is not None and expires_at <= now:
        violations.append(
            FieldViolation("expire_time", f"R16: a credit must expire after it is granted ({format_micros(now)})")
        )
    if not IDENTIFIER_RE.match(request_id or ""):
        violations.append(FieldViolation("request_id", f"must be {IDENTIFIER_RULE}"))
    if violations or value is None:
        raise InvalidInput(violations)
    return CreditGrant(org_id, value, reason, now, expires_at, request_id)


def credit_balances(
    grants: Sequence[CreditGrant], applications: Iterable[CreditApplication], at: int
) -> list[CreditBalance]:
    """Each grant's used and left amounts from every application on issued invoices, as of `at`."""
    used: dict[int, list[Decimal]] = {}
    for application in applications:
        used.setdefault(application.credit_sequence, []).append(application.amount)
    balances = []
    for grant in grants:
        spent = exact_sum(used.get(grant.sequence, []))
        balances.append(CreditBalance(grant, spent, grant.amount - spent, grant.expired_at(at)))
    return balances


def apply_credits(balances: Sequence[CreditBalance], amount: Decimal, at: int) -> tuple[CreditApplication, ...]:
    """R16: draw `amount` (after discounts) from the credits available at `at`, soonest-expiring first (grants
    without expiry last, then oldest grant first); never more than a grant has left or than the amount."""
    if amount <= 0:
        return ()
    available = [b for b in balances if b.grant.available_at(at) and b.left > 0]
    available.sort(
        key=lambda b: (b.grant.expires_at is None, b.grant.expires_at or 0, b.grant.sequence),
    )
    remaining = amount
    applied: list[CreditApplication] = []
    for balance in available:
        if remaining <= 0:
            break
        take = min(balance.left, remaining)
        applied.append(CreditApplication(balance.grant.sequence, take))
        remaining -= take
    return tuple(applied)


def credit_left(balances: Iterable[CreditBalance], at: int) -> Decimal:
    """Everything an invoice issued at `at` could draw (R16)."""
    return exact_sum([b.left for b in balances if b.grant.available_at(at) and b.left > 0])
