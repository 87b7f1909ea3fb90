"""ledger.log.proofs: LogNodes over the SQL store, entry decoding, proof bundles (prove_entries), checkpoint checks."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest

from ledger.errors import InvalidInput, VerificationError
from ledger.intake import Ledger
from ledger.log.entry import EntryKind, entry_bytes
from ledger.log.merkle import (
    EMPTY_ROOT,
    InMemoryTree,
    consistency_proof,
    inclusion_proof,
    multi_inclusion_proof,
    root_at,
)
from ledger.log.note import Checkpoint, NoteSigner, NoteVerifier, generate_signer_key, sign_checkpoint
from ledger.log.proofs import (
    PROOF_FORMAT,
    PROOF_FORMAT_V1,
    LogNodes,
    SignedCheckpoint,
    check_against_checkpoints,
    check_checkpoint_extends,
    decode_entry,
    load_proof,
    log_origin,
    origin_log_id,
    prove_entries,
)
from ledger.log.signing import CheckpointSigner
from storage.sql import SqlStore
from tests.conftest import EventFactory

if TYPE_CHECKING:
    from tests.audit_support import TamperFactory

pytest_plugins = ["tests.audit_support"]
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

SIGNER = NoteSigner(generate_signer_key("usage-ledger.local"))
VERIFIER = NoteVerifier(SIGNER.verifier_key)
OTHER = NoteSigner(generate_signer_key("usage-ledger.local"))  # same name, another key


def _store(ledger: Ledger) -> SqlStore:
    assert isinstance(ledger.store, SqlStore)
    return ledger.store


def _signed(ledger: Ledger, log_id: str = "org/acme") -> SignedCheckpoint:
    stored, _ = CheckpointSigner(_store(ledger), SIGNER, clock=ledger.clock).sign(log_id)
    return stored.signed()


def _tree(ledger: Ledger, log_id: str = "org/acme") -> InMemoryTree:
    return InMemoryTree(e.encoded() for e in ledger.store.iter_entries(log_id))


# -- LogNodes ---------------------------------------------------------------------------------------------------------


def test_log_nodes_give_every_prefix_root_and_proof_of_an_independent_rebuild(
    ledger: Ledger, make_event: EventFactory
) -> None:
    for batch in (1, 2, 7, 3):
        ledger.append_events([make_event() for _ in range(batch)])
    tree = _tree(ledger)
    nodes = LogNodes(_store(ledger), "org/acme")
    for size in range(tree.size + 1):
        assert root_at(size, nodes) == root_at(size, tree)
    assert consistency_proof(5, 13, nodes) == consistency_proof(5, 13, tree)
    assert repr(nodes) == "LogNodes('org/acme')"


# -- entry bytes ------------------------------------------------------------------------------------------------------


def test_decode_entry_inverts_the_encoding() -> None:
    data = entry_bytes("org/a", 7, "EVENT", -5, b'{"x":1}')
    entry = decode_entry(data, bytes(32), b"\x01" * 32)
    assert (entry.log_id, entry.sequence, entry.kind, entry.recorded_at, entry.body) == (
        "org/a",
        7,
        EntryKind.EVENT,
        -5,
        b'{"x":1}',
    )
    assert entry.encoded() == data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated in version"),
        (b"\x02" + entry_bytes("a", 0, "EVENT", 0, b"{}")[1:], "encoding version 2"),
        (entry_bytes("a", 0, "EVENT", 0, b"{}")[:-1], "truncated in body"),
        (entry_bytes("a", 0, "EVENT", 0, b"{}") + b"\x00", "1 bytes after the body"),
        (entry_bytes("a", 0, "NOPE", 0, b"{}"), "kind is not valid"),
        (b"\x01\x00\x01\xff" + bytes(8) + b"\x05EVENT" + bytes(12), "log id or kind is not valid"),
    ],
)
def test_decode_entry_rejects_malformed_bytes(data: bytes, message: str) -> None:
    with pytest.raises(VerificationError, match=message):
        decode_entry(data, bytes(32), bytes(32))


# -- origins ----------------------------------------------------------------------------------------------------------


def test_origins_name_the_ledger_and_the_log() -> None:
    assert log_origin("usage-ledger.local", "org/acme") == "usage-ledger.local/org/acme"
    assert origin_log_id("usage-ledger.local/org/acme", "usage-ledger.local") == "org/acme"
    for origin in ("other.example/org/acme", "usage-ledger.local/", "usage-ledger.localx/system"):
        with pytest.raises(VerificationError, match="is not a log of ledger"):
            origin_log_id(origin, "usage-ledger.local")


# -- prove_entries and bundles ----------------------------------------------------------------------------------------


def test_prove_entries_gives_a_bundle_that_verifies_offline(ledger: Ledger, make_event: EventFactory) -> None:
    ledger.append_events([make_event() for _ in range(9)])
    checkpoint = _signed(ledger)
    ledger.append_events([make_event() for _ in range(4)])  # proofs stay against the signed size
    bundle = prove_entries(_store(ledger), "org/acme", [7, 0, 3, 3], checkpoint)
    assert [e.sequence for e in bundle.entries] == [0, 3, 7]
    assert bundle.proof == tuple(multi_inclusion_proof([0, 3, 7], 9, _tree(ledger)))
    assert bundle.verify(VERIFIER, "usage-ledger.local") == checkpoint.checkpoint
    assert bundle.verify(VERIFIER) == checkpoint.checkpoint

    document = json.loads(json.dumps(bundle.to_json()))
    assert document["format"] == PROOF_FORMAT and document["tree_size"] == 9
    assert document["verifier_key_name"] == "usage-ledger.local"
    assert document["verifier_key_id"] == SIGNER.key_id.hex()
    again = load_proof(json.dumps(document))
    assert again == bundle
    assert again.verify(VERIFIER, "usage-ledger.local") == checkpoint.checkpoint


@sqlite_only
def test_prove_entries_refuses_entries_the_checkpoint_does_not_cover(ledger: Ledger, make_event: EventFactory) -> None:
    ledger.append_events([make_event() for _ in range(4)])
    checkpoint = _signed(ledger)
    with pytest.raises(InvalidInput) as err:
        prove_entries(_store(ledger), "org/acme", [1, 4, 9], checkpoint)
    assert [v.description for v in err.value.violations] == [
        "entry #4 is not in the checkpoint of size 4",
        "entry #9 is not in the checkpoint of size 4",
    ]
    with pytest.raises(InvalidInput, match="is of log 'org/acme'"):
        prove_entries(_store(ledger), "system", [0], checkpoint)


def test_prove_entries_refuses_a_store_that_no_longer_matches_the_checkpoint(
    ledger: Ledger, tamper: TamperFactory, make_event: EventFactory
) -> None:
    ledger.append_events([make_event() for _ in range(6)])
    checkpoint = _signed(ledger)
    body = ledger.entry("org/acme", 2).body.replace(b'"A100"', b'"L4"')
    with tamper() as t:
        t("UPDATE entries SET body = :body WHERE log_id = 'org/acme' AND seq = 2", body=body)
    for cited in ([2], [0, 1, 2, 5]):  # named among many too: the shared proof fails, each path says which
        with pytest.raises(
            VerificationError, match=r"entry org/acme#2: its bytes are not the leaf .* \(entry rewritten\)"
        ):
            prove_entries(_store(ledger), "org/acme", cited, checkpoint)
    prove_entries(_store(ledger), "org/acme", [1], checkpoint).verify(VERIFIER)  # other entries still prove
    with tamper() as t:
        t.truncate("org/acme", 4)
    with pytest.raises(VerificationError, match=r"has 4 entries but a checkpoint of 6 was signed \(log truncated\)"):
        prove_entries(_store(ledger), "org/acme", [1], checkpoint)


@sqlite_only
def test_prove_entries_refuses_rewritten_merkle_nodes(
    ledger: Ledger, tamper: TamperFactory, make_event: EventFactory
) -> None:
    ledger.append_events([make_event() for _ in range(4)])
    checkpoint = _signed(ledger)
    with tamper() as t:
        t("UPDATE entries SET subtree_hashes = :h WHERE log_id = 'org/acme' AND seq = 3", h=bytes(96))
    with pytest.raises(VerificationError, match=r"no longer has the signed root \(log rewritten\)"):
        prove_entries(_store(ledger), "org/acme", [0], checkpoint)


def _document(ledger: Ledger, make_event: EventFactory, cited: tuple[int, ...] = (2,)) -> dict[str, Any]:
    ledger.append_events([make_event() for _ in range(5)])
    bundle = prove_entries(_store(ledger), "org/acme", cited, _signed(ledger))
    return json.loads(json.dumps(bundle.to_json()))  # type: ignore[no-any-return]


def _flip_hex(value: str) -> str:
    return ("1" if value[0] == "0" else "0") + value[1:]


def _with_body(document: dict[str, Any], body: bytes) -> str:
    entry = decode_entry(bytes.fromhex(document["entries"][0]["entry_bytes"]), bytes(32), bytes(32))
    return entry_bytes(entry.log_id, entry.sequence, entry.kind.value, entry.recorded_at, body).hex()


def _shrink_checkpoint(document: dict[str, Any]) -> None:
    document["checkpoint"] = document["checkpoint"].replace("\n5\n", "\n4\n")
    document["tree_size"] = 4


MODIFICATIONS: list[tuple[str, Any, str]] = [
    (
        "proof hash",
        lambda d: d["inclusion_proof"].__setitem__(0, _flip_hex(d["inclusion_proof"][0])),
        "entry org/acme#2 is not in the signed checkpoint",
    ),
    ("proof hash dropped", lambda d: d["inclusion_proof"].pop(), "need 3"),
    (
        "entry body",
        lambda d: d["entries"][0].__setitem__("entry_bytes", _with_body(d, b'{"a":1}')),
        "entry hash is not SHA-256",
    ),
    (
        "readable copy",
        lambda d: d["entries"][0]["entry"].__setitem__("body", '{"forged":true}'),
        "differs from what entry_bytes encode",
    ),
    ("leaf index", lambda d: d["entries"][0].__setitem__("leaf_index", 3), "leaf_index 3 is not the entry's sequence"),
    ("tree size", lambda d: d.__setitem__("tree_size", 4), "tree_size or root_hash differ"),
    ("checkpoint text", _shrink_checkpoint, "does not verify"),
    ("unknown field", lambda d: d.__setitem__("trust_me", True), "unknown fields ['trust_me']"),
    ("format", lambda d: d.__setitem__("format", "other/v9"), "is not 'usage-ledger-proof/v2'"),
    ("a v1 entry proof in v2", lambda d: d["entries"][0].__setitem__("inclusion_proof", []), "unknown fields"),
    (
        "upper-case hex",
        lambda d: d["entries"][0].__setitem__("entry_hash", d["entries"][0]["entry_hash"].upper()),
        "lower-case hex",
    ),
]


@sqlite_only
@pytest.mark.parametrize(("what", "modify", "message"), MODIFICATIONS, ids=[m[0] for m in MODIFICATIONS])
def test_a_modified_proof_does_not_verify(
    ledger: Ledger, make_event: EventFactory, what: str, modify: Any, message: str
) -> None:
    document = _document(ledger, make_event)
    load_proof(json.dumps(document)).verify(VERIFIER)
    modify(document)
    with pytest.raises(VerificationError, match=re.escape(message)):
        load_proof(json.dumps(document)).verify(VERIFIER, "usage-ledger.local")


MANY_MODIFICATIONS: list[tuple[str, Any, str]] = [
    ("proof hash", lambda d: d["inclusion_proof"].__setitem__(1, _flip_hex(d["inclusion_proof"][1])), "the 3 entries"),
    ("entry left out", lambda d: d["entries"].pop(1), "need"),
    ("entries reordered", lambda d: d["entries"].reverse(), "increasing sequence order"),
    ("entry twice", lambda d: d["entries"].insert(1, d["entries"][0]), "increasing sequence order"),
    ("extra hash", lambda d: d["inclusion_proof"].append(d["inclusion_proof"][0]), "need"),
]


@sqlite_only
@pytest.mark.parametrize(("what", "modify", "message"), MANY_MODIFICATIONS, ids=[m[0] for m in MANY_MODIFICATIONS])
def test_a_modified_proof_of_many_entries_does_not_verify(
    ledger: Ledger, make_event: EventFactory, what: str, modify: Any, message: str
) -> None:
    document = _document(ledger, make_event, cited=(0, 2, 3))
    assert load_proof(json.dumps(document)).verify(VERIFIER).size == 5
    modify(document)
    with pytest.raises(VerificationError, match=re.escape(message)):
        load_proof(json.dumps(document)).verify(VERIFIER)


def _v1_document(ledger: Ledger, make_event: EventFactory, cited: tuple[int, ...]) -> dict[str, Any]:
    """proof.json as the ledger wrote it before v2: one RFC 9162 proof in each entry, none at the top."""
    document = _document(ledger, make_event, cited)
    tree = _tree(ledger)
    del document["inclusion_proof"]
    document["format"] = PROOF_FORMAT_V1
    for item in document["entries"]:
        item["inclusion_proof"] = [h.hex() for h in inclusion_proof(item["leaf_index"], 5, tree)]
    return document


@sqlite_only
def test_a_v1_proof_still_checks_and_a_modified_one_does_not(ledger: Ledger, make_event: EventFactory) -> None:
    document = _v1_document(ledger, make_event, (0, 2, 3))
    bundle = load_proof(json.dumps(document))
    assert bundle.verify(VERIFIER).size == 5
    assert bundle.proof == tuple(multi_inclusion_proof([0, 2, 3], 5, _tree(ledger)))
    # A hash only entry 3's own proof uses (its sibling, entry 2's leaf, is cited anyway) is still checked.
    document["entries"][2]["inclusion_proof"][0] = _flip_hex(document["entries"][2]["inclusion_proof"][0])
    with pytest.raises(VerificationError, match=re.escape("entry org/acme#3 is not in the signed checkpoint")):
        load_proof(json.dumps(document))
    document["entries"][2]["inclusion_proof"].pop()
    with pytest.raises(VerificationError, match="needs"):
        load_proof(json.dumps(document))


@sqlite_only
def test_a_proof_of_no_entries_claims_only_its_checkpoint(ledger: Ledger, make_event: EventFactory) -> None:
    """A dispute lookup whose cited entries all came after the checkpoint hands out such a bundle."""
    document = _document(ledger, make_event)
    document["entries"], document["inclusion_proof"] = [], []
    assert load_proof(json.dumps(document)).verify(VERIFIER).size == 5
    legacy = dict(document, format=PROOF_FORMAT_V1)
    del legacy["inclusion_proof"]
    assert load_proof(json.dumps(legacy)).verify(VERIFIER).size == 5
    document["inclusion_proof"] = ["00" * 32]
    with pytest.raises(VerificationError, match="inclusion proof hashes for no entries"):
        load_proof(json.dumps(document)).verify(VERIFIER)


@sqlite_only
def test_a_proof_checked_with_another_key_or_ledger_name_fails(ledger: Ledger, make_event: EventFactory) -> None:
    bundle = load_proof(json.dumps(_document(ledger, make_event)))
    with pytest.raises(VerificationError, match="no signature by key"):
        bundle.verify(NoteVerifier(OTHER.verifier_key))
    with pytest.raises(VerificationError, match=re.escape("is not 'prod.example/org/acme'")):
        bundle.verify(VERIFIER, "prod.example")


# -- the auditor's checkpoint checks ----------------------------------------------------------------------------------


def _cp(tree: InMemoryTree, size: int, signer: NoteSigner = SIGNER) -> SignedCheckpoint:
    checkpoint = Checkpoint("usage-ledger.local/org/acme", size, root_at(size, tree))
    return SignedCheckpoint.open("org/acme", sign_checkpoint(checkpoint, signer), NoteVerifier(signer.verifier_key))


def test_check_against_checkpoints() -> None:
    tree = InMemoryTree(f"entry {i}".encode() for i in range(10))
    roots = {n: root_at(n, tree) for n in range(11)}
    forged = InMemoryTree(f"forged {i}".encode() for i in range(10))

    def proof(old: int, new: int) -> list[bytes]:
        return consistency_proof(old, new, tree)

    check_against_checkpoints("org/acme", 10, roots, _cp(tree, 8), _cp(tree, 3), proof)
    check_against_checkpoints("org/acme", 10, roots, _cp(tree, 8), _cp(tree, 8), proof)
    check_against_checkpoints("org/acme", 10, roots, None, None, proof)
    cases: list[tuple[SignedCheckpoint | None, SignedCheckpoint | None, str]] = [
        (_cp(forged, 8), None, r"not the signed checkpoint's .* \(log rewritten\)"),
        (_cp(tree, 8), _cp(forged, 3), r"of the checkpoint verified earlier \(log rewritten since\)"),
        (_cp(tree, 3), _cp(tree, 8), r"fewer than the 8 of a checkpoint verified earlier"),
        (None, _cp(tree, 8), r"serves no signed checkpoint.*\(checkpoints removed\)"),
    ]
    for newest, trusted, message in cases:
        with pytest.raises(VerificationError, match=message):
            check_against_checkpoints("org/acme", 10, roots, newest, trusted, proof)
    short = {n: r for n, r in roots.items() if n <= 6}
    with pytest.raises(VerificationError, match=r"a checkpoint of 8 entries was signed but only 6 are stored"):
        check_against_checkpoints("org/acme", 6, short, _cp(tree, 8), None, proof)
    with pytest.raises(VerificationError, match=r"8 entries was verified earlier but only 6 are stored now"):
        check_against_checkpoints("org/acme", 6, short, _cp(tree, 5), _cp(tree, 8), proof)


def test_check_checkpoint_extends_names_forks_and_bad_proofs() -> None:
    tree = InMemoryTree(f"entry {i}".encode() for i in range(10))
    forged = InMemoryTree([*(f"entry {i}".encode() for i in range(4)), *(f"x {i}".encode() for i in range(6))])
    check_checkpoint_extends(_cp(tree, 4), _cp(tree, 9), consistency_proof(4, 9, tree))
    with pytest.raises(VerificationError, match="two signed checkpoints of size 9 with different roots"):
        check_checkpoint_extends(_cp(tree, 9), _cp(forged, 9), [])
    with pytest.raises(VerificationError, match=r"not consistent with the checkpoint of size 6 .*\(log rewritten\)"):
        check_checkpoint_extends(_cp(tree, 6), _cp(forged, 9), consistency_proof(6, 9, forged))
    assert root_at(0, tree) == EMPTY_ROOT
