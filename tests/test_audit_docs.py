"""docs/audit.md's worked example is real: every hex value in it is recomputed here from the documented rules."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.log.entry import GENESIS_HASH, Entry, EntryKind, chain_hash, entry_bytes
from ledger.log.merkle import (
    InMemoryTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    multi_inclusion_proof,
    node_hash,
    root_at,
    verify_multi_inclusion,
)
from ledger.log.note import Checkpoint, NoteSigner, NoteVerifier, sign_checkpoint
from ledger.log.proofs import ProofBundle, SignedCheckpoint, load_proof

DOC = Path(__file__).resolve().parents[1] / "docs" / "audit.md"

LOG_ID = "org/demo"
RECORDED_AT = 1_791_201_600_000_000  # 2026-10-05T12:00:00Z
BODIES = [
    b'{"event_id":"e-1","type":"WORKLOAD_UP"}',
    b'{"event_id":"e-2","type":"WORKLOAD_READY"}',
    b'{"event_id":"e-3","type":"WORKLOAD_STOPPED"}',
]
KEY_NAME = "usage-ledger.local"
SEED = bytes(range(32))  # a published test key: never sign anything real with it


def example_key() -> str:
    public = Ed25519PrivateKey.from_private_bytes(SEED).public_key().public_bytes_raw()
    key_id = hashlib.sha256(KEY_NAME.encode() + b"\n\x01" + public).digest()[:4]
    key = base64.b64encode(bytes([0x01]) + SEED).decode()
    return f"PRIVATE+KEY+{KEY_NAME}+{key_id.hex()}+{key}"


def worked_example() -> dict[str, Any]:
    """Everything the worked example shows, computed with the ledger's own code."""
    entries: list[Entry] = []
    previous = GENESIS_HASH
    for seq, body in enumerate(BODIES):
        encoded = entry_bytes(LOG_ID, seq, "EVENT", RECORDED_AT, body)
        entry_hash = chain_hash(previous, encoded)
        entries.append(Entry(LOG_ID, seq, EntryKind.EVENT, RECORDED_AT, body, previous, entry_hash))
        previous = entry_hash
    tree = InMemoryTree(e.encoded() for e in entries)
    signer = NoteSigner(example_key())
    checkpoint = Checkpoint(f"{KEY_NAME}/{LOG_ID}", 3, tree.root())
    note = sign_checkpoint(checkpoint, signer)
    signed = SignedCheckpoint.open(LOG_ID, note, NoteVerifier(signer.verifier_key), KEY_NAME)
    bundle = ProofBundle(signed, (entries[1],), tuple(inclusion_proof(1, 3, tree)))
    return {
        "entries": entries,
        "leaf_hashes": [tree.leaf_hash(i) for i in range(3)],
        "stored": [tree.stored_subtree_hashes(i) for i in range(3)],
        "node_01": node_hash(tree.leaf_hash(0), tree.leaf_hash(1)),
        "root_2": root_at(2, tree),
        "root_3": tree.root(),
        "inclusion_1_3": inclusion_proof(1, 3, tree),
        "multi_0_2_3": multi_inclusion_proof([0, 2], 3, tree),
        "consistency_2_3": consistency_proof(2, 3, tree),
        "verifier_key": signer.verifier_key,
        "key_id": signer.key_id,
        "note": note,
        "proof_json": json.dumps(bundle.to_json(), indent=2, sort_keys=True),
        "bundle": bundle,
    }


def _values(example: dict[str, Any]) -> list[str]:
    values = [example["verifier_key"], example["key_id"].hex(), example["node_01"].hex()]
    values += [example["root_2"].hex(), example["root_3"].hex()]
    values += [base64.b64encode(example["root_3"]).decode()]
    for entry in example["entries"]:
        values += [entry.encoded().hex(), entry.entry_hash.hex()]
    values += [h.hex() for h in example["leaf_hashes"]]
    values += [b"".join(s).hex() for s in example["stored"]]
    values += [h.hex() for h in example["inclusion_1_3"] + example["consistency_2_3"] + example["multi_0_2_3"]]
    values += example["note"].splitlines()
    return values


def test_every_worked_example_value_is_in_the_document() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [v for v in _values(worked_example()) if v and v not in text]
    assert not missing, f"docs/audit.md is out of date; missing: {missing}"


def test_the_documented_proof_json_verifies() -> None:
    example = worked_example()
    text = DOC.read_text(encoding="utf-8")
    start = text.index("```json\n", text.index("<!-- proof.json example -->")) + len("```json\n")
    document = text[start : text.index("```", start)]
    assert json.loads(document) == json.loads(example["proof_json"])
    assert load_proof(document).verify(NoteVerifier(example["verifier_key"]), KEY_NAME).size == 3


def test_the_example_multi_leaf_proof_is_the_one_hash_the_document_says() -> None:
    """Entries 0 and 2 of three: the verifier computes node (1, 0) from leaf 0 and the proof's leaf 1, then the
    root from that and leaf 2; leaf 1 is all it is sent."""
    example = worked_example()
    leaves = example["leaf_hashes"]
    assert example["multi_0_2_3"] == [leaves[1]]
    verify_multi_inclusion([(0, leaves[0]), (2, leaves[2])], 3, example["multi_0_2_3"], example["root_3"])
    assert "Multi-leaf inclusion proof of entries 0 and 2 in the tree of size 3: `[leaf 1]`" in DOC.read_text()


def test_the_example_stored_layout_follows_stored_at() -> None:
    example = worked_example()
    # Leaf 1 completes the level-1 node over leaves 0 and 1, so it stores two hashes; leaves 0 and 2 store one.
    assert [len(s) for s in example["stored"]] == [1, 2, 1]
    assert example["stored"][1][1] == example["node_01"]
    assert example["root_3"] == node_hash(example["node_01"], example["leaf_hashes"][2])
    assert example["leaf_hashes"][0] == leaf_hash(example["entries"][0].encoded())


if __name__ == "__main__":  # prints the values for the document
    example = worked_example()
    for entry, leaf, stored in zip(example["entries"], example["leaf_hashes"], example["stored"], strict=True):
        print(f"entry {entry.sequence}")
        print("  bytes     ", entry.encoded().hex())
        print("  previous  ", entry.previous_hash.hex())
        print("  entry hash", entry.entry_hash.hex())
        print("  leaf hash ", leaf.hex())
        print("  stored    ", b"".join(stored).hex())
    print("node(0,1)", example["node_01"].hex())
    print("root 2", example["root_2"].hex())
    print("root 3", example["root_3"].hex(), base64.b64encode(example["root_3"]).decode())
    print("inclusion 1 in 3", [h.hex() for h in example["inclusion_1_3"]])
    print("consistency 2 -> 3", [h.hex() for h in example["consistency_2_3"]])
    print("multi 0, 2 in 3", [h.hex() for h in example["multi_0_2_3"]])
    print(example["proof_json"])
    print("verifier key", example["verifier_key"], "key id", example["key_id"].hex())
    print(example["note"])
    print(example["proof_json"])
