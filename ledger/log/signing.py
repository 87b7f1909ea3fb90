"""Server-side checkpoints: when to sign each log's tree head, and the checks that keep two signatures consistent.

The ledger signs a checkpoint of size n only after recomputing it from the store and proving it extends the newest
checkpoint already signed (the one of size m < n):

0. the newest stored note is opened with the ledger's own key and must be this log's (origin), and its row's size
   and root columns must equal the note's: only the signed note is trusted, never the unsigned copies beside it
   (someone with write access to the database can change those, but cannot sign);
1. the stored Merkle nodes covering entries [0, m) still fold to the signed root of size m;
2. entries [m, n) are re-hashed from their bytes (chain links, leaf hashes and every stored subtree hash), and
   the tree of size n is rebuilt from step 1's frontier and those leaves, independently of the stored inner nodes;
3. that root equals the one the stored nodes and the log head give, and the RFC 9162 consistency proof from m to
   n, built from the stored nodes, verifies between the two roots.

Any failure refuses the signature (CheckpointRefused, DATA_LOSS on the wire), is logged as an error, is reported to
`on_refusal` (the server counts it: usageledger.signing.refusals) and stores nothing: a log rewritten or truncated
under the server never gets a signature. The cost is O(log n) node reads plus the entries appended
since the last checkpoint; the first checkpoint of a log re-hashes the whole log once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from ledger.errors import LedgerError, NotFound, StorageError, VerificationError
from ledger.log.entry import GENESIS_HASH, Entry, LogHead
from ledger.log.merkle import Frontier, consistency_proof, root_at, verify_consistency
from ledger.log.note import Checkpoint, NoteSigner, NoteVerifier, sign_checkpoint
from ledger.log.proofs import DEFAULT_LEDGER_NAME, LogNodes, SignedCheckpoint, log_origin
from ledger.log.replay import SIGNING, Replay, ReplayError
from ledger.ports import IndexColumns, ProofSource
from ledger.timeutil import Clock, system_clock
from ledger.tracing import traced

__all__ = [
    "DEFAULT_LEDGER_NAME",
    "CheckpointConflict",
    "CheckpointRefused",
    "CheckpointSchedule",
    "CheckpointSigner",
    "CheckpointStore",
    "SigningKeyNotConfigured",
    "StoredCheckpoint",
    "frontier_nodes",
]

log = logging.getLogger("usageledger.checkpoints")

# How often a signer re-reads the newest checkpoint and tries again when another signer stored one meanwhile.
_SIGN_ATTEMPTS = 5


class SigningKeyNotConfigured(LedgerError):
    """The server has no checkpoint signing key; FAILED_PRECONDITION on the wire, with how to configure one."""

    reason = "SIGNING_KEY_NOT_CONFIGURED"

    def __init__(self) -> None:
        super().__init__(
            "this ledger has no checkpoint signing key: create one with "
            "`ledgerctl audit keygen --name NAME --out FILE` and start the server with --signing-key FILE "
            "(or LEDGER_SIGNING_KEY=FILE)"
        )


class CheckpointRefused(VerificationError):
    """The log no longer extends its newest signed checkpoint, so the ledger refuses to sign it (DATA_LOSS)."""

    reason = "CHECKPOINT_REFUSED"
    kind = "checkpoint"


class CheckpointConflict(LedgerError):
    """Another signer stored a checkpoint of the log after this one read the newest; the signer checks again."""

    reason = "CHECKPOINT_CONFLICT"


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A row of the append-only checkpoints table: the signed note and copies of its size and root for queries."""

    log_id: str
    size: int
    root_hash: bytes
    note: str
    signed_at: int  # microseconds since the epoch

    def signed(self) -> SignedCheckpoint:
        """The stored note parsed (not verified: it is this ledger's own row; auditors verify the signature)."""
        return SignedCheckpoint.parse(self.log_id, self.note)

    def opened(self, verifier: NoteVerifier, ledger_name: str) -> SignedCheckpoint:
        """The stored note verified with `verifier` as this log's checkpoint in ledger `ledger_name`, with the row's
        size and root columns required to equal the note's; raises VerificationError naming what fails."""
        signed = SignedCheckpoint.open(self.log_id, self.note, verifier, ledger_name)
        if signed.size != self.size or signed.root_hash != self.root_hash:
            raise VerificationError(
                f"the checkpoints row says size {self.size}, root {self.root_hash.hex()}, but its signed note says "
                f"size {signed.size}, root {signed.root_hash.hex()} (checkpoints table altered)"
            )
        return signed


class CheckpointStore(ProofSource, Protocol):
    """What signing reads and writes: the log (entries, head, stored nodes) and the checkpoints table."""

    def get_entry(self, log_id: str, sequence: int) -> Entry: ...

    def audit_rows(self, log_id: str, start: int = 0) -> Iterator[tuple[Entry, IndexColumns, bytes]]: ...

    def latest_checkpoint(self, log_id: str) -> StoredCheckpoint | None: ...

    def checkpoint_at(self, log_id: str, size: int) -> StoredCheckpoint | None: ...

    def add_checkpoint(self, checkpoint: StoredCheckpoint, previous_size: int | None) -> None:
        """Insert, provided the newest stored checkpoint of the log still has `previous_size` (None: there is
        none); raises CheckpointConflict otherwise. Serialized per log across processes."""
        ...


def frontier_nodes(size: int) -> list[tuple[int, int]]:
    """(level, index) of the perfect subtrees a tree of `size` leaves decomposes into, leftmost (largest) first."""
    nodes = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            nodes.append((level, start >> level))
            start += 1 << level
    return nodes


@dataclass(frozen=True)
class CheckpointSchedule:
    """When a log is due for a new checkpoint: it grew since the last one, by `every_entries` or more, or the last
    one is `every_seconds` old (or there is none). Zero turns a trigger off."""

    every_entries: int = 1000
    every_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.every_entries < 0 or self.every_seconds < 0:
            raise ValueError("checkpoint intervals must not be negative")

    @property
    def enabled(self) -> bool:
        return bool(self.every_entries or self.every_seconds)

    def due(self, size: int, signed_size: int | None, seconds_since_signed: float | None) -> bool:
        grown = size - (signed_size or 0)
        if grown <= 0:
            return False
        if self.every_entries and grown >= self.every_entries:
            return True
        if self.every_seconds:
            return seconds_since_signed is None or seconds_since_signed >= self.every_seconds
        return False


class CheckpointSigner:
    """Signs and serves one ledger's checkpoints. Never signs a log that does not extend its newest checkpoint."""

    def __init__(
        self,
        store: CheckpointStore,
        signer: NoteSigner,
        *,
        ledger_name: str = DEFAULT_LEDGER_NAME,
        clock: Clock = system_clock,
        on_refusal: Callable[[CheckpointRefused], None] = lambda _: None,
    ) -> None:
        # Checkpoint() validates the origin; check the ledger name up front rather than at the first signature.
        Checkpoint(log_origin(ledger_name, "system"), 0, bytes(32))
        self.store = store
        self._signer = signer
        self.verifier = NoteVerifier(signer.verifier_key)
        self.ledger_name = ledger_name
        self.clock = clock
        self._on_refusal = on_refusal

    @property
    def verifier_key(self) -> str:
        return self.verifier.verifier_key

    def origin(self, log_id: str) -> str:
        return log_origin(self.ledger_name, log_id)

    def latest(self, log_id: str) -> StoredCheckpoint:
        found = self.store.latest_checkpoint(log_id)
        if found is None:
            self.store.head(log_id)  # NotFound for a log that does not exist
            raise NotFound(f"log {log_id} has no signed checkpoint yet (SignCheckpoint signs one)")
        return found

    def at(self, log_id: str, size: int) -> StoredCheckpoint:
        found = self.store.checkpoint_at(log_id, size)
        if found is None:
            raise NotFound(f"log {log_id} has no signed checkpoint of size {size}")
        return found

    @traced("ledger.checkpoint.sign", ids=("log_id",))
    def sign(self, log_id: str) -> tuple[StoredCheckpoint, bool]:
        """A checkpoint of the log's current size: the stored one if that size is signed already, else a new one
        (True). Raises CheckpointRefused when the log does not extend its newest checkpoint, NotFound for no log."""
        try:
            return self._sign(log_id)
        except CheckpointRefused as err:
            log.error("%s", err)
            self._on_refusal(err)
            raise

    def _sign(self, log_id: str) -> tuple[StoredCheckpoint, bool]:
        for _ in range(_SIGN_ATTEMPTS):
            head = self.store.head(log_id)
            latest = self.store.latest_checkpoint(log_id)
            signed = None if latest is None else self._opened(latest)
            if signed is not None and latest is not None and signed.size >= head.size:
                self._check_unchanged(log_id, head, signed)
                if signed.size == head.size:
                    return latest, False
            root = self._verified_root(log_id, head, signed)
            checkpoint = Checkpoint(self.origin(log_id), head.size, root)
            stored = StoredCheckpoint(log_id, head.size, root, sign_checkpoint(checkpoint, self._signer), self.clock())
            try:
                self.store.add_checkpoint(stored, None if latest is None else latest.size)
            except CheckpointConflict:
                continue  # another signer got there first: check against what it stored
            log.info("signed checkpoint of %s at size %d, root %s", log_id, head.size, root.hex())
            return stored, True
        raise StorageError(f"log {log_id}: other signers kept storing checkpoints; try again")

    def _opened(self, latest: StoredCheckpoint) -> SignedCheckpoint:
        """Step 0 of the module docstring: the newest stored checkpoint as its signed note says, checked."""
        try:
            return latest.opened(self.verifier, self.ledger_name)
        except VerificationError as err:
            raise CheckpointRefused(
                f"refusing to sign log {latest.log_id}: its newest stored checkpoint cannot be trusted: {err}"
            ) from err

    def _check_unchanged(self, log_id: str, head: LogHead, latest: SignedCheckpoint) -> None:
        """The log has not grown past its newest checkpoint: it must still have exactly that tree."""
        if latest.size > head.size:
            raise CheckpointRefused(
                f"refusing to sign log {log_id}: it has {head.size} entries but a checkpoint of {latest.size} "
                "was signed (log truncated)"
            )
        if root_at(head.size, LogNodes(self.store, log_id)) != latest.root_hash or head.root_hash != latest.root_hash:
            raise CheckpointRefused(
                f"refusing to sign log {log_id}: its tree of size {head.size} no longer has the signed root "
                f"{latest.root_hash.hex()} (log rewritten)"
            )

    def _verified_root(self, log_id: str, head: LogHead, latest: SignedCheckpoint | None) -> bytes:
        """The root of the first head.size entries, recomputed as the module docstring describes."""

        def refuse(why: str) -> CheckpointRefused:
            return CheckpointRefused(f"refusing to sign log {log_id} at size {head.size}: {why}")

        size = head.size
        nodes = LogNodes(self.store, log_id)
        old_size = 0 if latest is None else latest.size
        try:
            frontier = Frontier(old_size, tuple(nodes.subtree_hashes(frontier_nodes(old_size))))
        except NotFound as err:
            raise refuse(f"stored Merkle nodes of the first {old_size} entries are missing ({err})") from err
        if latest is not None and frontier.root() != latest.root_hash:
            raise refuse(
                f"the stored tree of its first {old_size} entries no longer has the root signed at size {old_size} "
                "(log rewritten)"
            )
        try:
            previous = self.store.get_entry(log_id, old_size - 1).entry_hash if old_size else GENESIS_HASH
        except NotFound as err:
            raise refuse(f"entry #{old_size - 1}, the last one signed, is missing") from err
        # Step 2: entries [m, n) replayed onto the frontier of m, their stored subtree hashes checked on the way.
        replay = Replay(log_id, old_size, previous, frontier=frontier, wording=SIGNING, bodies=False)
        try:
            for entry, _, stored_subtrees in self.store.audit_rows(log_id, old_size):
                if replay.expected == size:
                    break
                replay.entry(entry, None, stored_subtrees)
            replay.head(head)
        except ReplayError as err:
            raise refuse(str(err)) from err
        root = replay.root()
        if root_at(size, nodes) != root:
            raise refuse("the stored Merkle nodes do not give the root recomputed from the entries")
        if latest is not None and 0 < old_size < size:
            try:
                verify_consistency(old_size, size, latest.root_hash, root, consistency_proof(old_size, size, nodes))
            except VerificationError as err:
                raise refuse(f"not consistent with the checkpoint of size {old_size}: {err}") from err
        return root
