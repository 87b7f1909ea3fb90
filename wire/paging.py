"""Pages of list RPCs (AIP-158): page sizes and the opaque page tokens the server issues and reads back."""

from __future__ import annotations

import base64

from ledger.errors import FieldViolation, InvalidInput

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_NOT_OURS = "is not a page token this server issued"


def page_size(requested: int, field: str = "page_size") -> int:
    if requested < 0:
        raise InvalidInput([FieldViolation(field, "must not be negative")])
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def sequence(value: int, field: str) -> int:
    """A sequence number the store can hold (a signed 64-bit column); beyond it no entry exists or ever will."""
    if not 0 <= value < 2**63:
        raise InvalidInput([FieldViolation(field, f"must be a sequence number from 0 to {2**63 - 1}")])
    return value


def decode_token(token: str, field: str = "page_token") -> str:
    """Page tokens are opaque to clients: base64 of the last key returned."""
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidInput([FieldViolation(field, _NOT_OURS)]) from err


def encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def sequence_token(token: str) -> int:
    """The sequence a ListEntries token carries (the next page's first entry)."""
    try:
        value = int(decode_token(token))
    except ValueError as err:  # a token of ours always holds digits
        raise InvalidInput([FieldViolation("page_token", _NOT_OURS)]) from err
    return sequence(value, "page_token")


def number_token(page_token: str, default: int) -> int:
    """Where a page starts: the number a page token of ours carries (the first index or size of the next page), or
    `default` without one."""
    if not page_token:
        return default
    token = decode_token(page_token)
    # ASCII digits of a sequence number or size only (str.isdigit also takes "²", which int() refuses): signed
    # 64-bit columns.
    if not (token.isascii() and token.isdigit() and int(token) < 2**63):
        raise InvalidInput([FieldViolation("page_token", _NOT_OURS)])
    return int(token)


def position_token(token: str) -> int:
    """A position in a list held whole by the server (credits, invoices, backfills); 0 without a token."""
    if not token:
        return 0
    try:
        value = int(base64.urlsafe_b64decode(token.encode()).decode())
        if value < 0:
            raise ValueError
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidInput([FieldViolation("page_token", _NOT_OURS)]) from err
    return value


def next_position_token(position: int, total: int) -> str:
    return base64.urlsafe_b64encode(str(position).encode()).decode() if position < total else ""
