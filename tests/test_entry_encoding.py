"""The canonical entry encoding (docs/encoding.md), checked against bytes written out by hand."""

from __future__ import annotations

import hashlib

from ledger.log.entry import GENESIS_HASH, canonical_body, chain_hash, entry_bytes
from ledger.log.merkle import leaf_hash


def test_entry_bytes_match_the_documented_layout() -> None:
    # version | len(log_id) u16 | log_id | seq u64 | len(kind) u8 | kind | recorded_at i64 | len(body) u32 | body
    expected = bytes.fromhex(
        "010005" + b"org/a".hex() + "000000000000000105" + b"EVENT".hex() + "00000000000f424000000002" + b"{}".hex()
    )
    assert entry_bytes("org/a", 1, "EVENT", 1_000_000, b"{}") == expected


def test_negative_recorded_time_is_twos_complement() -> None:
    encoded = entry_bytes("system", 0, "PRICE_BOOK", -1, b"")
    assert encoded[-12:-4] == b"\xff" * 8


def test_chain_hash_is_sha256_of_previous_hash_then_entry_bytes() -> None:
    encoded = entry_bytes("org/a", 0, "EVENT", 0, b'{"a":1}')
    assert chain_hash(GENESIS_HASH, encoded) == hashlib.sha256(bytes(32) + encoded).digest()


def test_merkle_leaf_hashes_the_same_entry_bytes_with_a_zero_prefix() -> None:
    encoded = entry_bytes("org/a", 0, "EVENT", 0, b"{}")
    assert leaf_hash(encoded) == hashlib.sha256(b"\x00" + encoded).digest()


def test_canonical_body_sorts_keys_and_drops_white_space() -> None:
    assert canonical_body({"b": "é", "a": [1, True, None]}) == '{"a":[1,true,null],"b":"é"}'.encode()
