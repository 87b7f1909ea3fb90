"""Proofs over stored logs: the store as a Merkle NodeSource, and bundles of entries proven against one checkpoint.

A ProofBundle is what invoices, dispute lookups and `ledgerctl audit prove` hand out: the exact entry bytes, an
RFC 9162 inclusion proof for each, and the signed checkpoint they lead to. Anyone holding the ledger's verifier key
can check a bundle offline with `ProofBundle.verify` (docs/audit.md describes the JSON form step by step).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.errors import FieldViolation, InvalidInput, VerificationError
from ledger.log.entry import ENCODING_VERSION, Entry, EntryKind, entry_bytes
from ledger.log.merkle import (
    combine_inclusion_proofs,
    inclusion_proof,
    leaf_hash,
    multi_inclusion_proof,
    root_at,
    verify_consistency,
    verify_inclusion,
    verify_multi_inclusion,
)
from ledger.log.note import Checkpoint, NoteVerifier
from ledger.log.replay import check_chain
from ledger.ports import ProofSource, SubtreeSource
from ledger.tracing import traced

__all__ = [
    "DEFAULT_LEDGER_NAME",
    "PROOF_FORMAT",
    "PROOF_FORMAT_V1",
    "LogNodes",
    "ProofBundle",
    "ProofSource",
    "SignedCheckpoint",
    "SubtreeSource",
    "check_against_checkpoints",
    "check_chain",
    "check_checkpoint_extends",
    "check_every_checkpoint",
    "decode_entry",
    "load_proof",
    "log_origin",
    "origin_log_id",
    "prove_entries",
]

PROOF_FORMAT = "usage-ledger-proof/v2"
# One RFC 9162 proof per entry; still read (ProofBundle.from_json), no longer written.
PROOF_FORMAT_V1 = "usage-ledger-proof/v1"
DEFAULT_LEDGER_NAME = "usage-ledger.local"


class LogNodes:
    """One log of a store as a merkle.NodeSource: roots and proofs then cost O(log n) node reads in one query."""

    __slots__ = ("log_id", "store")

    def __init__(self, store: SubtreeSource, log_id: str) -> None:
        self.store = store
        self.log_id = log_id

    def subtree_hashes(self, nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        return self.store.subtree_hashes(self.log_id, nodes)

    def __repr__(self) -> str:
        return f"LogNodes({self.log_id!r})"


class _CachedNodes:
    """A NodeSource that remembers what it fetched: proofs for many leaves of one tree share their upper nodes."""

    def __init__(self, source: LogNodes) -> None:
        self._source = source
        self._known: dict[tuple[int, int], bytes] = {}

    def subtree_hashes(self, nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        missing = [n for n in nodes if n not in self._known]
        if missing:
            self._known.update(zip(missing, self._source.subtree_hashes(missing), strict=True))
        return [self._known[n] for n in nodes]


# -- entries as bytes ---------------------------------------------------------------------------------------------


def decode_entry(data: bytes, previous_hash: bytes, entry_hash: bytes) -> Entry:
    """Parse canonical entry bytes (ledger.entry.entry_bytes) back into an Entry, with the chain hashes that travel
    beside them. Strict, so each entry has exactly one encoding; the chain link itself is checked by `check_chain`
    (or by audit verification, which reports it against the entry's sequence number)."""

    def bad(why: str) -> VerificationError:
        return VerificationError(f"entry bytes: {why}")

    position = 0

    def take(count: int, what: str) -> bytes:
        nonlocal position
        if position + count > len(data):
            raise bad(f"truncated in {what} (needs {count} bytes at offset {position}, has {len(data) - position})")
        chunk = data[position : position + count]
        position += count
        return chunk

    version = take(1, "version")[0]
    if version != ENCODING_VERSION:
        raise bad(f"encoding version {version}, this ledger writes {ENCODING_VERSION}")
    log_raw = take(int.from_bytes(take(2, "log id length"), "big"), "log id")
    sequence = int.from_bytes(take(8, "sequence"), "big")
    kind_raw = take(take(1, "kind length")[0], "kind")
    recorded_at = int.from_bytes(take(8, "recorded_at"), "big", signed=True)
    body = take(int.from_bytes(take(4, "body length"), "big"), "body")
    if position != len(data):
        raise bad(f"{len(data) - position} bytes after the body")
    try:
        log_id = log_raw.decode("utf-8")
        kind = EntryKind(kind_raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as err:
        raise bad(f"log id or kind is not valid ({err})") from err
    if entry_bytes(log_id, sequence, kind.value, recorded_at, body) != data:
        raise bad("not in canonical form")
    return Entry(log_id, sequence, kind, recorded_at, body, bytes(previous_hash), bytes(entry_hash))


# -- signed checkpoints --------------------------------------------------------------------------------------------


def log_origin(ledger_name: str, log_id: str) -> str:
    """A log's checkpoint origin: `<ledger name>/<log id>`, such as `usage-ledger.local/org/acme`."""
    return f"{ledger_name}/{log_id}"


def origin_log_id(origin: str, ledger_name: str) -> str:
    """The log an origin of ledger `ledger_name` names; raises when the origin is another ledger's."""
    prefix = ledger_name + "/"
    if not origin.startswith(prefix) or len(origin) == len(prefix):
        raise VerificationError(f"checkpoint: origin {origin!r} is not a log of ledger {ledger_name!r}")
    return origin[len(prefix) :]


def _check_origin(origin: str, log_id: str, ledger_name: str | None) -> None:
    if ledger_name is not None:
        if origin != log_origin(ledger_name, log_id):
            raise VerificationError(
                f"checkpoint: origin {origin!r} is not {log_origin(ledger_name, log_id)!r} "
                f"(log {log_id!r} of ledger {ledger_name!r})"
            )
    elif not origin.endswith("/" + log_id):
        raise VerificationError(f"checkpoint: origin {origin!r} is not of log {log_id!r}")


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint together with the signed note it came from, for one log.

    `parse` only reads the note; `open` also verifies its signature. Consumers of proofs always verify
    (ProofBundle.verify), so a SignedCheckpoint read from one's own database may be parsed without a key.
    """

    log_id: str
    checkpoint: Checkpoint
    note: str

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root_hash(self) -> bytes:
        return self.checkpoint.root_hash

    @property
    def origin(self) -> str:
        return self.checkpoint.origin

    @classmethod
    def parse(cls, log_id: str, note: str) -> SignedCheckpoint:
        """Read a signed checkpoint of `log_id` without checking its signature."""
        split = note.rfind("\n\n")
        if split < 0:
            raise VerificationError("signed note: no blank line between text and signatures")
        checkpoint = Checkpoint.from_text(note[: split + 1])
        _check_origin(checkpoint.origin, log_id, None)
        return cls(log_id, checkpoint, note)

    @classmethod
    def open(cls, log_id: str, note: str, verifier: NoteVerifier, ledger_name: str | None = None) -> SignedCheckpoint:
        """Verify that `verifier`'s key signed the note and that it is log `log_id`'s checkpoint; with
        `ledger_name`, the origin must be exactly `<ledger_name>/<log_id>`."""
        checkpoint = Checkpoint.from_text(verifier.verify(note))
        _check_origin(checkpoint.origin, log_id, ledger_name)
        return cls(log_id, checkpoint, note)

    def signers(self) -> list[tuple[str, str]]:
        """(key name, key id hex) of each signature line, as claimed by the note: informational, never trusted."""
        found = []
        for line in self.note[self.note.rfind("\n\n") + 2 :].splitlines():
            _, _, rest = line.partition(" ")
            name, _, signature = rest.partition(" ")
            try:
                key_id = base64.b64decode(signature, validate=True)[:4].hex()
            except (binascii.Error, ValueError):
                key_id = ""
            found.append((name, key_id))
        return found


def check_checkpoint_extends(old: SignedCheckpoint, new: SignedCheckpoint, proof: Sequence[bytes]) -> None:
    """Check that `new` extends `old` (same log, no entry of `old` changed); raises naming a truncated, rewritten
    or forked log. `proof` is the RFC 9162 consistency proof from old.size to new.size."""
    if old.log_id != new.log_id or old.origin != new.origin:
        raise VerificationError(f"checkpoints of different logs: {old.origin!r} and {new.origin!r}")
    if new.size < old.size:
        raise VerificationError(
            f"log {new.log_id}: newest checkpoint has {new.size} entries, fewer than the {old.size} of a checkpoint "
            "verified earlier (log truncated or checkpoints rolled back)"
        )
    if new.size == old.size:
        if new.root_hash != old.root_hash:
            raise VerificationError(
                f"log {new.log_id}: two signed checkpoints of size {new.size} with different roots "
                f"({old.root_hash.hex()} and {new.root_hash.hex()}): the ledger showed two different logs"
            )
        return
    try:
        verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
    except VerificationError as err:
        raise VerificationError(
            f"log {new.log_id}: checkpoint of size {new.size} is not consistent with the checkpoint of size "
            f"{old.size} verified earlier (log rewritten): {err}"
        ) from err


def _check_signed_root(log_id: str, stored_size: int, roots: Mapping[int, bytes], signed: SignedCheckpoint) -> None:
    """A signed checkpoint against the `stored_size` verified entries and the roots recomputed from them."""
    if signed.size > stored_size:
        raise VerificationError(
            f"log {log_id}: a checkpoint of {signed.size} entries was signed but only {stored_size} are stored "
            "(log truncated)"
        )
    if roots[signed.size] != signed.root_hash:
        raise VerificationError(
            f"log {log_id}: the Merkle root of its first {signed.size} entries, recomputed from the entries, is "
            f"{roots[signed.size].hex()}, not the signed checkpoint's {signed.root_hash.hex()} (log rewritten)"
        )


def check_every_checkpoint(
    log_id: str,
    stored_size: int,
    roots: Mapping[int, bytes],
    signed: Sequence[SignedCheckpoint],
    consistency: Callable[[int, int], Sequence[bytes]],
) -> None:
    """Every signed checkpoint the ledger stores for one log (opened with the verifier key, smallest first) against
    the roots recomputed from its `stored_size` verified entries, and each against the one before it by an RFC 9162
    consistency proof; raises VerificationError naming the first that fails.

    Checking only the newest is not enough: a log rewritten and then signed again carries a valid newest signature,
    while the notes signed before the rewrite contradict it.
    """
    previous: SignedCheckpoint | None = None
    for checkpoint in signed:
        _check_signed_root(log_id, stored_size, roots, checkpoint)
        if previous is not None:
            proof = consistency(previous.size, checkpoint.size) if 0 < previous.size < checkpoint.size else []
            check_checkpoint_extends(previous, checkpoint, proof)
        previous = checkpoint


def check_against_checkpoints(
    log_id: str,
    stored_size: int,
    roots: Mapping[int, bytes],
    newest: SignedCheckpoint | None,
    trusted: SignedCheckpoint | None,
    consistency: Callable[[int, int], Sequence[bytes]],
) -> None:
    """The auditor's checkpoint checks for one log, after its entries were re-hashed; raises VerificationError.

    `stored_size` entries were verified and `roots` holds the roots recomputed from them at the checkpoints' sizes.
    `newest` is the ledger's newest signed checkpoint and `trusted` one the auditor verified earlier (both already
    opened with the verifier key); `consistency(old, new)` fetches an RFC 9162 consistency proof. Catches a log
    rewritten under its signature, a truncated log, and a ledger that rewrote or rolled back its checkpoints since
    the auditor last looked.
    """
    if newest is not None:
        _check_signed_root(log_id, stored_size, roots, newest)
    if trusted is None:
        return
    if trusted.size > stored_size:
        raise VerificationError(
            f"log {log_id}: a checkpoint of {trusted.size} entries was verified earlier but only {stored_size} are "
            "stored now (log truncated)"
        )
    if roots[trusted.size] != trusted.root_hash:
        raise VerificationError(
            f"log {log_id}: the Merkle root of its first {trusted.size} entries is {roots[trusted.size].hex()}, not "
            f"{trusted.root_hash.hex()} of the checkpoint verified earlier (log rewritten since)"
        )
    if newest is None:
        raise VerificationError(
            f"log {log_id}: the ledger serves no signed checkpoint, but one of size {trusted.size} was verified "
            "earlier (checkpoints removed)"
        )
    proof = consistency(trusted.size, newest.size) if 0 < trusted.size < newest.size else []
    check_checkpoint_extends(trusted, newest, proof)


# -- proof bundles ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProofBundle:
    """Entries of one log and one multi-leaf inclusion proof that the signed checkpoint holds all of them.

    `entries` are in increasing sequence order (the leaf index of an entry is its sequence) and `proof` is
    `merkle.multi_inclusion_proof` of their sequences; for a single entry that is its RFC 9162 inclusion proof.
    """

    checkpoint: SignedCheckpoint
    entries: tuple[Entry, ...]
    proof: tuple[bytes, ...]

    @property
    def log_id(self) -> str:
        return self.checkpoint.log_id

    def verify(self, verifier: NoteVerifier, ledger_name: str | None = None) -> Checkpoint:
        """Check the checkpoint's signature, every entry's chain link and their inclusion; raises VerificationError."""
        checkpoint = SignedCheckpoint.open(self.log_id, self.checkpoint.note, verifier, ledger_name).checkpoint
        leaves = []
        for entry in self.entries:
            if entry.log_id != self.log_id:
                raise VerificationError(f"proof: entry {entry.log_id}#{entry.sequence} is not in log {self.log_id}")
            check_chain(entry)
            leaves.append((entry.sequence, leaf_hash(entry.encoded())))
        if not leaves:
            if self.proof:
                raise VerificationError(f"proof: {len(self.proof)} inclusion proof hashes for no entries")
            return checkpoint  # nothing claimed but the signed checkpoint itself
        try:
            verify_multi_inclusion(leaves, checkpoint.size, self.proof, checkpoint.root_hash)
        except VerificationError as err:
            raise VerificationError(f"proof: {_which(self.entries)} not in the signed checkpoint: {err}") from err
        return checkpoint

    def to_json(self) -> dict[str, Any]:
        """The proof.json form (docs/audit.md); `entry` is a readable copy of `entry_bytes` that readers compare."""
        signers = self.checkpoint.signers()
        return {
            "format": PROOF_FORMAT,
            "log_id": self.log_id,
            "tree_size": self.checkpoint.size,
            "root_hash": self.checkpoint.root_hash.hex(),
            "checkpoint": self.checkpoint.note,
            "verifier_key_name": signers[0][0] if signers else "",
            "verifier_key_id": signers[0][1] if signers else "",
            "entries": [
                {
                    "leaf_index": entry.sequence,
                    "entry_bytes": encoded.hex(),
                    "previous_hash": entry.previous_hash.hex(),
                    "entry_hash": entry.entry_hash.hex(),
                    "leaf_hash": leaf_hash(encoded).hex(),
                    "entry": _readable(entry),
                }
                for entry in self.entries
                for encoded in (entry.encoded(),)
            ],
            "inclusion_proof": [h.hex() for h in self.proof],
        }

    @classmethod
    def from_json(cls, document: Any) -> ProofBundle:
        """Parse proof.json strictly: unknown or missing fields, and readable copies that differ from the bytes,
        are errors, so what a person reads in the file is what the proof covers. Reads the v1 form too (one
        inclusion proof per entry), so proofs handed out before v2 still check."""
        legacy = isinstance(document, Mapping) and document.get("format") == PROOF_FORMAT_V1
        top_fields = set(_TOP_FIELDS) if legacy else {*_TOP_FIELDS, "inclusion_proof"}
        top = _fields("proof", document, top_fields)
        if top["format"] not in (PROOF_FORMAT, PROOF_FORMAT_V1):
            raise VerificationError(f"proof: format {top['format']!r} is not {PROOF_FORMAT!r}")
        log_id = _string("proof.log_id", top["log_id"])
        signed = SignedCheckpoint.parse(log_id, _string("proof.checkpoint", top["checkpoint"]))
        if top["tree_size"] != signed.size or _hex("proof.root_hash", top["root_hash"]) != signed.root_hash:
            raise VerificationError("proof: tree_size or root_hash differ from the signed checkpoint's")
        if not isinstance(top["entries"], list):
            raise VerificationError("proof.entries: must be a list")
        entry_fields = {*_ENTRY_FIELDS, "inclusion_proof"} if legacy else set(_ENTRY_FIELDS)
        entries: list[Entry] = []
        single_proofs: list[tuple[bytes, ...]] = []
        for i, item in enumerate(top["entries"]):
            where = f"proof.entries[{i}]"
            fields = _fields(where, item, entry_fields)
            entry = decode_entry(
                _hex(f"{where}.entry_bytes", fields["entry_bytes"]),
                _hex(f"{where}.previous_hash", fields["previous_hash"]),
                _hex(f"{where}.entry_hash", fields["entry_hash"]),
            )
            check_chain(entry)
            if fields["leaf_index"] != entry.sequence:
                raise VerificationError(f"{where}: leaf_index {fields['leaf_index']!r} is not the entry's sequence")
            if _hex(f"{where}.leaf_hash", fields["leaf_hash"]) != leaf_hash(entry.encoded()):
                raise VerificationError(f"{where}: leaf_hash is not SHA-256(0x00 || entry_bytes)")
            if fields["entry"] != _readable(entry):
                raise VerificationError(f"{where}.entry: differs from what entry_bytes encode")
            if entries and entry.sequence <= entries[-1].sequence:
                raise VerificationError(f"{where}: entries must be in increasing sequence order, once each")
            entries.append(entry)
            if legacy:
                single_proofs.append(_hashes(f"{where}.inclusion_proof", fields["inclusion_proof"]))
        if legacy:
            proof = _from_single_proofs(tuple(entries), single_proofs, signed)
        else:
            proof = _hashes("proof.inclusion_proof", top["inclusion_proof"])
        return cls(signed, tuple(entries), proof)


_TOP_FIELDS = (
    "format",
    "log_id",
    "tree_size",
    "root_hash",
    "checkpoint",
    "verifier_key_name",
    "verifier_key_id",
    "entries",
)
_ENTRY_FIELDS = ("leaf_index", "entry_bytes", "previous_hash", "entry_hash", "leaf_hash", "entry")


def _which(entries: Sequence[Entry]) -> str:
    if len(entries) == 1:
        return f"entry {entries[0].log_id}#{entries[0].sequence} is"
    return f"the {len(entries)} entries are"


def _from_single_proofs(
    entries: tuple[Entry, ...], proofs: Sequence[tuple[bytes, ...]], signed: SignedCheckpoint
) -> tuple[bytes, ...]:
    """A v1 bundle's per-entry RFC 9162 proofs, each checked as v1 checked it, as the one multi-leaf proof of v2
    (the signature over the root is then checked by ProofBundle.verify, as for v2)."""
    for entry, proof in zip(entries, proofs, strict=True):
        try:
            verify_inclusion(leaf_hash(entry.encoded()), entry.sequence, signed.size, proof, signed.root_hash)
        except VerificationError as err:
            raise VerificationError(
                f"proof: entry {entry.log_id}#{entry.sequence} is not in the signed checkpoint: {err}"
            ) from err
    by_index = {entry.sequence: proof for entry, proof in zip(entries, proofs, strict=True)}
    return tuple(combine_inclusion_proofs(by_index, signed.size))


def _hashes(where: str, value: Any) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise VerificationError(f"{where}: must be a list of hex hashes")
    return tuple(_hex(f"{where}[{j}]", h) for j, h in enumerate(value))


def _readable(entry: Entry) -> dict[str, Any]:
    return {
        "log_id": entry.log_id,
        "sequence": entry.sequence,
        "kind": entry.kind.value,
        "recorded_at": entry.recorded_at,
        "body": entry.body.decode("utf-8", errors="replace"),
    }


def _fields(where: str, value: Any, want: set[str]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise VerificationError(f"{where}: must be a JSON object")
    unknown = sorted(set(value) - want)
    missing = sorted(want - set(value))
    if unknown or missing:
        raise VerificationError(f"{where}: unknown fields {unknown}, missing fields {missing}")
    return dict(value)


def _string(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise VerificationError(f"{where}: must be a string")
    return value


def _hex(where: str, value: Any) -> bytes:
    if not isinstance(value, str) or value != value.lower():
        raise VerificationError(f"{where}: must be lower-case hex")
    try:
        return bytes.fromhex(value)
    except ValueError as err:
        raise VerificationError(f"{where}: not hex") from err


def load_proof(text: str) -> ProofBundle:
    """Parse a proof.json document."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise VerificationError(f"proof: not JSON ({err.msg} at line {err.lineno})") from err
    return ProofBundle.from_json(document)


# -- proving from a store -------------------------------------------------------------------------------------------


@traced("ledger.proof.entries", ids=("log_id",))
def prove_entries(
    store: ProofSource, log_id: str, sequences: Iterable[int], checkpoint: SignedCheckpoint
) -> ProofBundle:
    """Inclusion proofs for the given entries of `log_id` against `checkpoint`, checked before they are returned.

    Raises InvalidInput for a sequence the checkpoint does not cover, and VerificationError when the store no
    longer matches the checkpoint (entries or Merkle nodes rewritten, log truncated): a bundle that comes back
    verifies.
    """
    if checkpoint.log_id != log_id:
        raise InvalidInput([FieldViolation("checkpoint", f"is of log {checkpoint.log_id!r}, not {log_id!r}")])
    wanted = sorted(set(sequences))
    size = checkpoint.size
    bad = [
        FieldViolation("sequences", f"entry #{s} is not in the checkpoint of size {size}")
        for s in wanted
        if not 0 <= s < size
    ]
    if bad:
        raise InvalidInput(bad)
    head = store.head(log_id)
    if head.size < size:
        raise VerificationError(
            f"log {log_id}: has {head.size} entries but a checkpoint of {size} was signed (log truncated)"
        )
    nodes = _CachedNodes(LogNodes(store, log_id))
    if size and root_at(size, nodes) != checkpoint.root_hash:
        raise VerificationError(
            f"log {log_id}: the stored tree of size {size} no longer has the signed root (log rewritten)"
        )
    # One multi-leaf proof and one read of the entries: a dispute lookup proves the hundreds of entries it cites,
    # and one RFC 9162 proof each (twenty nodes to assemble and check per entry) cost more than the rest of it.
    proof = tuple(multi_inclusion_proof(wanted, size, nodes))
    by_sequence = {entry.sequence: entry for entry in store.entries_at(log_id, wanted)}
    entries = []
    for sequence in wanted:
        entry = by_sequence.get(sequence)
        if entry is None:
            raise VerificationError(f"entry {log_id}#{sequence}: missing from the log the checkpoint covers")
        entries.append(entry)
    if entries:
        try:
            verify_multi_inclusion(
                [(e.sequence, leaf_hash(e.encoded())) for e in entries], size, proof, checkpoint.root_hash
            )
        except VerificationError as err:
            raise _rewritten_entry(entries, size, checkpoint.root_hash, nodes) from err
    return ProofBundle(checkpoint, tuple(entries), proof)


def _rewritten_entry(entries: Sequence[Entry], size: int, root: bytes, nodes: _CachedNodes) -> VerificationError:
    """Which entry no longer matches the signed tree, once the proof of them all failed: each on its own path."""
    for entry in entries:
        try:
            verify_inclusion(
                leaf_hash(entry.encoded()), entry.sequence, size, inclusion_proof(entry.sequence, size, nodes), root
            )
        except VerificationError:
            return VerificationError(
                f"entry {entry.log_id}#{entry.sequence}: its bytes are not the leaf the signed tree holds "
                "(entry rewritten)"
            )
    return VerificationError(f"log {entries[0].log_id}: the stored Merkle nodes no longer give the signed root")
