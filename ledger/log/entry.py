"""Ledger entries: the canonical byte encoding that every hash, chain link and Merkle leaf is computed over.

docs/encoding.md specifies the format for auditors; keep the two in step.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from json.encoder import encode_basestring as _encode_json_string
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
    BACKFILL = "BACKFILL"  # R29: a backfill of past events opened or closed


def org_log_id(org_id: str) -> str:
    """Each org's entries form their own log (chain and Merkle tree), so orgs can shard independently."""
    return ORG_LOG_PREFIX + org_id


def org_of_log(log_id: str) -> str | None:
    return log_id[len(ORG_LOG_PREFIX) :] if log_id.startswith(ORG_LOG_PREFIX) else None


# What json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False) would build on
# every call; encoding keeps no state between calls, so one instance serves every thread.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_body(body: Mapping[str, Any]) -> bytes:
    """Canonical JSON: UTF-8, keys sorted, no insignificant white space, no floats anywhere.

    Equal facts give equal bytes, which is what R24's duplicate check compares. Auditors never re-encode
    bodies: they hash the stored bytes, so this only has to be deterministic within the ledger.
    """
    if type(body) is dict:
        flat = _flat_canonical_body(body)
        if flat is not None:
            return flat
    return _CANONICAL_JSON.encode(body).encode()


# A flat body's key order, by the order its keys were inserted in: bodies built by the same code (every usage
# event, by UsageEvent.body) share a handful of layouts, so the sort is done once per layout, not per body.
_FLAT_LAYOUTS: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}
_MAX_FLAT_LAYOUTS = 1024


def _flat_canonical_body(body: dict[Any, Any]) -> bytes | None:
    """The bytes _CANONICAL_JSON gives a dict of str keys to str, int, bool or None values; None for any other.

    The same escaping function the encoder uses, the same sorted order, the same separators: only the per-call
    setup and the sort are saved, which is most of encoding a body this small.
    """
    keys = tuple(body)
    layout = _FLAT_LAYOUTS.get(keys)
    if layout is None:
        if not all(type(key) is str for key in keys):
            return None
        layout = tuple((key, _encode_json_string(key) + ":") for key in sorted(keys))
    parts = []
    for key, prefix in layout:
        value = body[key]
        kind = type(value)
        if kind is str:
            parts.append(prefix + _encode_json_string(value))
        elif kind is int:
            parts.append(prefix + int.__repr__(value))
        elif value is True:
            parts.append(prefix + "true")
        elif value is False:
            parts.append(prefix + "false")
        elif value is None:
            parts.append(prefix + "null")
        else:
            return None
    if keys not in _FLAT_LAYOUTS:
        if len(_FLAT_LAYOUTS) >= _MAX_FLAT_LAYOUTS:
            _FLAT_LAYOUTS.clear()
        _FLAT_LAYOUTS[keys] = layout
    return ("{" + ",".join(parts) + "}").encode()


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


def entry_encoder(log_id: str) -> Callable[[int, str, int, bytes], bytes]:
    """entry_bytes for one log: `encode(sequence, kind, recorded_at, body)`, the same bytes and the same errors.

    An append batch encodes many entries of one log; the log's framing is built once here, not per entry.
    """
    log = log_id.encode()
    head = bytes((ENCODING_VERSION,)) + _U16.pack(len(log)) + log

    def encode(sequence: int, kind: str, recorded_at: int, body: bytes) -> bytes:
        kind_bytes = kind.encode()
        return b"".join(
            (
                head,
                sequence.to_bytes(8, "big"),
                bytes((len(kind_bytes),)),
                kind_bytes,
                recorded_at.to_bytes(8, "big", signed=True),
                len(body).to_bytes(4, "big"),
                body,
            )
        )

    return encode


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
class EntryHead:
    """An entry without its body: what citing it takes (an invoice's body can run to hundreds of KB)."""

    log_id: str
    sequence: int
    kind: EntryKind
    recorded_at: int
    entry_hash: bytes


@dataclass(frozen=True, slots=True)
class LogHead:
    log_id: str
    size: int
    head_hash: bytes
    root_hash: bytes
