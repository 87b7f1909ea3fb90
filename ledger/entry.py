"""Ledger entries: the canonical byte encoding that every hash, chain link and Merkle leaf is computed over.

docs/encoding.md specifies the format for auditors; keep the two in step.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

ENCODING_VERSION = 1
HASH_SIZE = 32
GENESIS_HASH = bytes(HASH_SIZE)  # the "previous hash" of entry 0
SYSTEM_LOG = "system"
ORG_LOG_PREFIX = "org/"

_U16 = struct.Struct(">H")


class EntryKind(StrEnum):
    EVENT = "EVENT"
    PRICE_BOOK = "PRICE_BOOK"
    ACCOUNT = "ACCOUNT"
    CREDIT = "CREDIT"
    ADJUSTMENT = "ADJUSTMENT"
    INVOICE = "INVOICE"
    PAYMENT = "PAYMENT"
    STATE = "STATE"


def org_log_id(org_id: str) -> str:
    """Each org's entries form their own log (chain and Merkle tree), so orgs can shard independently."""
    return ORG_LOG_PREFIX + org_id


def org_of_log(log_id: str) -> str | None:
    return log_id[len(ORG_LOG_PREFIX) :] if log_id.startswith(ORG_LOG_PREFIX) else None


def canonical_body(body: Mapping[str, Any]) -> bytes:
    """Canonical JSON: UTF-8, keys sorted, no insignificant white space, no floats anywhere.

    Equal facts give equal bytes, which is what R24's duplicate check compares. Auditors never re-encode
    bodies: they hash the stored bytes, so this only has to be deterministic within the ledger.
    """
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def entry_bytes(log_id: str, sequence: int, kind: str, recorded_at: int, body: bytes) -> bytes:
    """The bytes an entry's chain hash and Merkle leaf are computed over (docs/encoding.md).

    version u8 | len(log_id) u16 | log_id | sequence u64 | len(kind) u8 | kind | recorded_at i64 (µs) |
    len(body) u32 | body — all integers big-endian. Length prefixes make the framing unambiguous.
    """
    log = log_id.encode()
    kind_bytes = kind.encode()
    return b"".join(
        (
            bytes((ENCODING_VERSION,)),
            _U16.pack(len(log)),
            log,
            sequence.to_bytes(8, "big"),
            bytes((len(kind_bytes),)),
            kind_bytes,
            recorded_at.to_bytes(8, "big", signed=True),
            len(body).to_bytes(4, "big"),
            body,
        )
    )


def chain_hash(previous_hash: bytes, encoded_entry: bytes) -> bytes:
    """entry hash = SHA-256(previous hash || entry bytes)."""
    return hashlib.sha256(previous_hash + encoded_entry).digest()


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored entry. `body` is the canonical JSON exactly as hashed."""

    log_id: str
    sequence: int
    kind: EntryKind
    recorded_at: int
    body: bytes
    previous_hash: bytes
    entry_hash: bytes

    def encoded(self) -> bytes:
        return entry_bytes(self.log_id, self.sequence, self.kind.value, self.recorded_at, self.body)

    def body_json(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result


@dataclass(frozen=True, slots=True)
class EntryRef:
    """Where a figure comes from: a log, a sequence number and the entry's hash."""

    log_id: str
    sequence: int
    entry_hash: bytes

    def __str__(self) -> str:
        return f"{self.log_id}#{self.sequence} ({self.entry_hash.hex()[:16]}…)"


@dataclass(frozen=True, slots=True)
class LogHead:
    log_id: str
    size: int
    head_hash: bytes
    root_hash: bytes
