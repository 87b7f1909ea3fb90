"""RFC 9162 Merkle tree over a log's entries: leaf/node hashing, the append frontier, proofs and their verifiers."""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ledger.errors import FieldViolation, InvalidInput, NotFound, VerificationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "Frontier",
    "InMemoryTree",
    "NodeSource",
    "combine_inclusion_proofs",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "multi_inclusion_proof",
    "node_hash",
    "root_at",
    "stored_at",
    "verify_consistency",
    "verify_inclusion",
    "verify_multi_inclusion",
]

HASH_SIZE = 32
# The frontier encodes the size in 8 bytes, so no tree can grow past this.
MAX_TREE_SIZE = 2**64 - 1

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

_sha256 = hashlib.sha256

EMPTY_ROOT = _sha256(b"").digest()
"""MTH({}) of RFC 9162: the root of the tree with no leaves."""


def leaf_hash(entry_bytes: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d): the domain-separating prefix stops a leaf passing for an inner node."""
    return _sha256(_LEAF_PREFIX + entry_bytes).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an inner node from its two children."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def stored_at(level: int, index: int) -> tuple[int, int]:
    """Where the store keeps perfect node (level, index): (leaf index, position in that leaf's subtree_hashes).

    A perfect subtree's hash is fixed once its last leaf is appended, so it is written with that leaf and
    never touched again: appends only insert, and any node is one primary-key lookup away.
    """
    return ((index + 1) << level) - 1, level


def _trailing_ones(n: int) -> int:
    # n ^ (n + 1) sets the trailing ones of n plus the zero above them.
    return (n ^ (n + 1)).bit_length() - 1


def _range_nodes(begin: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees covering [begin, end), largest (leftmost) first.

    Callers pass ranges from the RFC 9162 recursion, where begin is aligned to a power of two at least as
    large as end - begin, so each set bit of the length is one aligned perfect subtree.
    """
    nodes = []
    pos = begin
    remaining = end - begin
    while remaining:
        level = remaining.bit_length() - 1
        nodes.append((level, pos >> level))
        pos += 1 << level
        remaining -= 1 << level
    return nodes


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Hash a right-edge range from its perfect subtrees: RFC 9162 splits at the largest power of two, so the
    leftmost subtree pairs with the hash of everything to its right."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise VerificationError(f"{what}: hash is {len(value)} bytes, expected {HASH_SIZE}")


@dataclass(frozen=True, slots=True)
class Frontier:
    """The compact state of a tree: its size and the hashes of the perfect subtrees of its binary decomposition.

    `hashes[0]` covers the leftmost (largest) subtree. This is all an appender needs: a tree of n leaves has
    popcount(n) such subtrees, so the head row of a log stays small however long the log grows.
    """

    size: int
    hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise VerificationError(f"frontier: size {self.size} is outside 0..{MAX_TREE_SIZE}")
        if len(self.hashes) != self.size.bit_count():
            raise VerificationError(
                f"frontier: a tree of size {self.size} has {self.size.bit_count()} perfect subtrees, "
                f"got {len(self.hashes)} hashes"
            )
        for h in self.hashes:
            _check_hash("frontier", h)

    @classmethod
    def empty(cls) -> Frontier:
        return cls(0, ())

    @classmethod
    def _trusted(cls, size: int, hashes: tuple[bytes, ...]) -> Frontier:
        # append/extend keep the invariants by construction; skipping __post_init__ halves the cost of the
        # object they build on every ingest.
        frontier = object.__new__(cls)
        object.__setattr__(frontier, "size", size)
        object.__setattr__(frontier, "hashes", hashes)
        return frontier

    def encode(self) -> bytes:
        """8-byte big-endian size, then the 32-byte hashes in order."""
        return self.size.to_bytes(8, "big") + b"".join(self.hashes)

    @classmethod
    def decode(cls, data: bytes) -> Frontier:
        if len(data) < 8:
            raise VerificationError(f"frontier: encoding is {len(data)} bytes, shorter than its 8-byte size")
        size = int.from_bytes(data[:8], "big")
        body = data[8:]
        want = size.bit_count() * HASH_SIZE
        if len(body) != want:
            raise VerificationError(f"frontier: size {size} needs {want} bytes of hashes, encoding has {len(body)}")
        return cls(size, tuple(body[i : i + HASH_SIZE] for i in range(0, want, HASH_SIZE)))

    def root(self) -> bytes:
        """The RFC 9162 root hash of the tree this frontier describes."""
        if not self.hashes:
            return EMPTY_ROOT
        return _fold(self.hashes)

    def append(self, leaf_hash: bytes) -> tuple[Frontier, list[bytes]]:
        """Add one leaf; returns the new frontier and the leaf's subtree_hashes (level 0 first).

        The new leaf closes one perfect subtree per trailing 1-bit of its index: those merge with the
        rightmost frontier hashes, so the cost is amortised O(1) hashes per append.
        """
        _check_hash("leaf hash", leaf_hash)
        size = self.size
        if size == MAX_TREE_SIZE:
            raise VerificationError(f"frontier: tree is full at size {size}")
        hashes = self.hashes
        merges = _trailing_ones(size)
        subtree = [leaf_hash]
        h = leaf_hash
        for k in range(1, merges + 1):
            h = node_hash(hashes[-k], h)
            subtree.append(h)
        kept = hashes[: len(hashes) - merges] if merges else hashes
        return Frontier._trusted(size + 1, (*kept, h)), subtree

    def extend(self, leaf_hashes: Iterable[bytes]) -> tuple[Frontier, list[list[bytes]]]:
        """Append a batch of leaves, building one frontier at the end instead of one per leaf."""
        size = self.size
        stack = list(self.hashes)
        stored: list[list[bytes]] = []
        # Run for every ingested entry: node_hash and the trailing-ones count are inlined (the same hashes).
        sha256 = _sha256
        for lh in leaf_hashes:
            if len(lh) != HASH_SIZE:
                _check_hash("leaf hash", lh)
            if size == MAX_TREE_SIZE:
                raise VerificationError(f"frontier: tree is full at size {size}")
            subtree = [lh]
            h = lh
            merges = size
            while merges & 1:  # one merge per trailing 1-bit of the new leaf's index
                h = sha256(_NODE_PREFIX + stack.pop() + h).digest()
                subtree.append(h)
                merges >>= 1
            stack.append(h)
            stored.append(subtree)
            size += 1
        return Frontier._trusted(size, tuple(stack)), stored


class NodeSource(Protocol):
    """Where proofs read stored perfect-subtree hashes from; the SQL store answers each call with one query."""

    def subtree_hashes(self, nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        """The hashes of the given (level, index) perfect nodes, in the same order."""
        ...


class _Plan:
    """The ranges a root or proof is made of, resolved to perfect nodes so they can be fetched in one batch."""

    __slots__ = ("nodes", "ranges")

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges: list[list[tuple[int, int]]] = [_range_nodes(b, e) for b, e in ranges]
        self.nodes: list[tuple[int, int]] = sorted({n for r in self.ranges for n in r})

    def assemble(self, source: NodeSource) -> list[bytes]:
        fetched = source.subtree_hashes(self.nodes) if self.nodes else []
        if len(fetched) != len(self.nodes):
            raise NotFound(f"node source returned {len(fetched)} hashes for {len(self.nodes)} nodes")
        by_node = dict(zip(self.nodes, fetched, strict=True))
        return [_fold([by_node[n] for n in r]) for r in self.ranges]


def _invalid(field: str, description: str) -> InvalidInput:
    return InvalidInput([FieldViolation(field, description)])


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose hashes form PATH(index, D[0:size]) of RFC 9162 2.1.3.1, leaf end first."""
    ranges = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = 1 << ((hi - lo - 1).bit_length() - 1)  # largest power of two below hi - lo
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    # The recursion appends each sibling after the deeper path, so the top-level sibling comes last.
    ranges.reverse()
    return ranges


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The ranges whose hashes form PROOF(old_size, D[0:new_size]) of RFC 9162 2.1.4.1."""
    ranges = []
    lo, hi = 0, new_size
    # Whether the current subtree is the whole old tree, whose root the verifier already has.
    whole_old_tree = True
    while old_size != hi:
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        if old_size - lo <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            whole_old_tree = False
    if not whole_old_tree:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def _check_size(field: str, size: int) -> None:
    if not 0 <= size <= MAX_TREE_SIZE:
        raise _invalid(field, f"must be in 0..{MAX_TREE_SIZE}, got {size}")


def root_at(size: int, source: NodeSource) -> bytes:
    """The root hash of the first `size` leaves, from at most log2(size) + 1 stored nodes."""
    _check_size("size", size)
    if size == 0:
        return EMPTY_ROOT
    return _Plan([(0, size)]).assemble(source)[0]


def inclusion_proof(index: int, size: int, source: NodeSource) -> list[bytes]:
    """The RFC 9162 inclusion proof of leaf `index` in the tree of the first `size` leaves."""
    _check_size("size", size)
    if not 0 <= index < size:
        raise _invalid("index", f"leaf index {index} is not in a tree of size {size}")
    return _Plan(_inclusion_ranges(index, size)).assemble(source)


def _multi_inclusion_ranges(indexes: Sequence[int], size: int) -> list[tuple[int, int]]:
    """The ranges whose hashes form the multi-leaf inclusion proof of `indexes` (sorted, distinct) in D[0:size].

    RFC 9162's PATH generalised to many leaves: the verifier rebuilds MTH(D[0:size]) by the RFC's recursion,
    splitting each range at the largest power of two below its length. A range with leaves in both halves needs
    nothing sent; one with leaves in one half needs that half's proof, then the other half's hash. For one leaf
    this is exactly PATH(m, D[0:n]); for many, each hash the paths share is sent once, and none a verifier can
    compute from the leaves it holds.
    """
    ranges: list[tuple[int, int]] = []

    def walk(lo: int, hi: int, first: int, last: int) -> None:
        # indexes[first:last] are the leaves in [lo, hi); there is at least one.
        if hi - lo == 1:
            return
        mid = lo + (1 << ((hi - lo - 1).bit_length() - 1))
        split = bisect_left(indexes, mid, first, last)
        if split == last:
            walk(lo, mid, first, last)
            ranges.append((mid, hi))
        elif split == first:
            walk(mid, hi, first, last)
            ranges.append((lo, mid))
        else:
            walk(lo, mid, first, split)
            walk(mid, hi, split, last)

    if indexes:
        walk(0, size, 0, len(indexes))
    return ranges


def _check_leaf_indexes(what: str, indexes: Sequence[int], size: int) -> None:
    if not indexes:
        raise VerificationError(f"{what}: no leaves to prove")
    previous = -1
    for index in indexes:
        if index <= previous:
            raise VerificationError(f"{what}: leaf indexes must be distinct and increasing ({previous}, {index})")
        previous = index
    if indexes[-1] >= size:
        raise VerificationError(f"{what}: leaf index {indexes[-1]} is not in a tree of size {size}")


def multi_inclusion_proof(indexes: Iterable[int], size: int, source: NodeSource) -> list[bytes]:
    """One proof that all the leaves `indexes` are in the tree of the first `size` leaves (docs/audit.md).

    A dispute lookup proves the hundreds of entries it cites with it: the entries near a window share most of
    their paths, so this is far fewer hashes to fetch, send and check than one RFC 9162 proof per entry.
    """
    _check_size("size", size)
    wanted = sorted(set(indexes))
    for index in wanted:
        if not 0 <= index < size:
            raise _invalid("index", f"leaf index {index} is not in a tree of size {size}")
    if not wanted:
        return []
    return _Plan(_multi_inclusion_ranges(wanted, size)).assemble(source)


def verify_multi_inclusion(leaves: Sequence[tuple[int, bytes]], size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check a multi-leaf inclusion proof: `leaves` are (index, leaf hash) by increasing index. Raises
    VerificationError naming what failed; a proof of one leaf is checked exactly as RFC 9162 2.1.3.2 checks it."""
    _check_hash("inclusion proof: root", root)
    _check_proof_hashes("inclusion proof", proof)
    indexes = [index for index, _ in leaves]
    if size < 0:
        raise VerificationError(f"inclusion proof: negative tree size {size}")
    _check_leaf_indexes("inclusion proof", indexes, size)
    hashes = []
    for index, leaf in leaves:
        _check_hash(f"inclusion proof: leaf {index}", leaf)
        hashes.append(leaf)
    want = len(_multi_inclusion_ranges(indexes, size))
    if len(proof) != want:
        raise VerificationError(
            f"inclusion proof: has {len(proof)} hashes, {len(indexes)} leaves in a tree of size {size} need {want}"
        )
    position = 0

    def climb(lo: int, hi: int, first: int, last: int) -> bytes:
        # MTH(D[lo:hi]) from the leaves indexes[first:last] and the proof, in _multi_inclusion_ranges' order.
        nonlocal position
        if hi - lo == 1:
            return hashes[first]
        mid = lo + (1 << ((hi - lo - 1).bit_length() - 1))
        split = bisect_left(indexes, mid, first, last)
        if split == last:
            left = climb(lo, mid, first, last)
            right = proof[position]
            position += 1
        elif split == first:
            right = climb(mid, hi, first, last)
            left = proof[position]
            position += 1
        else:
            left = climb(lo, mid, first, split)
            right = climb(mid, hi, split, last)
        return node_hash(left, right)

    computed = climb(0, size, 0, len(indexes))
    if computed != root:
        where = f"leaf {indexes[0]}" if len(indexes) == 1 else f"{len(indexes)} leaves from {indexes[0]}"
        raise VerificationError(
            f"inclusion proof: computed root {computed.hex()} does not match expected root {root.hex()} "
            f"({where}, tree size {size})"
        )


def combine_inclusion_proofs(proofs: Mapping[int, Sequence[bytes]], size: int) -> list[bytes]:
    """The multi-leaf inclusion proof of the leaves `proofs` holds RFC 9162 proofs for, taken from those proofs.

    Each hash of a multi-leaf proof is the sibling of a node on the path of a leaf below that node, so it is in
    that leaf's proof. The proofs are not checked here (verify_inclusion each first); a wrong length is refused.
    """
    _check_size("size", size)
    known: dict[tuple[int, int], bytes] = {}
    for index, proof in proofs.items():
        if not 0 <= index < size:
            raise VerificationError(f"inclusion proof: leaf index {index} is not in a tree of size {size}")
        ranges = _inclusion_ranges(index, size)
        if len(ranges) != len(proof):
            raise VerificationError(
                f"inclusion proof: has {len(proof)} hashes, leaf {index} in a tree of size {size} needs {len(ranges)}"
            )
        known.update(zip(ranges, proof, strict=True))
    return [known[r] for r in _multi_inclusion_ranges(sorted(proofs), size)]


def consistency_proof(old_size: int, new_size: int, source: NodeSource) -> list[bytes]:
    """The RFC 9162 proof that the tree of size `new_size` extends the one of size `old_size`."""
    _check_size("new_size", new_size)
    if not 0 <= old_size <= new_size:
        raise _invalid("old_size", f"must be in 0..new_size ({new_size}), got {old_size}")
    if old_size == new_size:
        return []
    if old_size == 0:
        # Every tree extends the empty one, so there is nothing to prove and verifiers reject such proofs.
        raise _invalid("old_size", "a consistency proof from the empty tree proves nothing; use size > 0")
    return _Plan(_consistency_ranges(old_size, new_size)).assemble(source)


def _inclusion_proof_size(index: int, size: int) -> int:
    # Below the level where index and the last leaf diverge every level has a sibling; above it, only the
    # levels where index is a right child do (the right edge has no right sibling).
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _check_proof_hashes(what: str, proof: Sequence[bytes]) -> None:
    for i, p in enumerate(proof):
        if len(p) != HASH_SIZE:
            raise VerificationError(f"{what}: proof hash {i} is {len(p)} bytes, expected {HASH_SIZE}")


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check an inclusion proof per RFC 9162 2.1.3.2; raises VerificationError naming what failed."""
    _check_hash("inclusion proof: leaf", leaf_hash)
    _check_hash("inclusion proof: root", root)
    _check_proof_hashes("inclusion proof", proof)
    if not 0 <= index < size:
        raise VerificationError(f"inclusion proof: leaf index {index} is not in a tree of size {size}")
    want = _inclusion_proof_size(index, size)
    # The RFC loop fails on a wrong length too; checking first gives a message that says so.
    if len(proof) != want:
        raise VerificationError(
            f"inclusion proof: has {len(proof)} hashes, leaf {index} in a tree of size {size} needs {want}"
        )
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # On the right edge with no right sibling: climb until this node is a right child again.
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if r != root:
        raise VerificationError(
            f"inclusion proof: computed root {r.hex()} does not match expected root {root.hex()} "
            f"(leaf {index}, tree size {size})"
        )


def _consistency_proof_size(old_size: int, new_size: int) -> int:
    # Below the old tree's last-leaf subtree the proof is an inclusion path of that subtree in the new tree;
    # the subtree's own hash is sent too unless it is the whole old tree (a power of two).
    shift = (old_size & -old_size).bit_length() - 1
    path = _inclusion_proof_size((old_size - 1) >> shift, ((new_size - 1) >> shift) + 1)
    return path if old_size == 1 << shift else path + 1


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Check a consistency proof per RFC 9162 2.1.4.2; raises VerificationError naming what failed."""
    _check_hash("consistency proof: old root", old_root)
    _check_hash("consistency proof: new root", new_root)
    _check_proof_hashes("consistency proof", proof)
    if old_size < 0 or new_size < 0:
        raise VerificationError(f"consistency proof: negative tree size ({old_size}, {new_size})")
    if old_size > new_size:
        raise VerificationError(f"consistency proof: old size {old_size} is larger than new size {new_size}")
    if old_size == new_size:
        if proof:
            raise VerificationError(
                f"consistency proof: sizes are equal ({old_size}) but the proof has {len(proof)} hashes"
            )
        if old_root != new_root:
            raise VerificationError(
                f"consistency proof: sizes are equal ({old_size}) but old root {old_root.hex()} "
                f"differs from new root {new_root.hex()}"
            )
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise VerificationError(f"consistency proof: root {old_root.hex()} of size 0 is not the empty tree's root")
        return
    if old_size == 0:
        raise VerificationError("consistency proof: a proof from the empty tree (size 0) is meaningless")
    want = _consistency_proof_size(old_size, new_size)
    if len(proof) != want:
        raise VerificationError(
            f"consistency proof: has {len(proof)} hashes, sizes {old_size} -> {new_size} need {want}"
        )

    path = list(proof)
    if old_size & (old_size - 1) == 0:
        # The old tree is a perfect subtree of the new one, so its root is the path's starting node.
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if fr != old_root:
        raise VerificationError(
            f"consistency proof: computed old root {fr.hex()} does not match expected {old_root.hex()} "
            f"(size {old_size})"
        )
    if sr != new_root:
        raise VerificationError(
            f"consistency proof: computed new root {sr.hex()} does not match expected {new_root.hex()} "
            f"(size {new_size})"
        )


class InMemoryTree:
    """A whole tree in memory, storing nodes exactly as the SQL store does; for tests and for auditors who
    rebuild a log from its downloaded entries."""

    def __init__(self, entries: Iterable[bytes] = ()) -> None:
        self._entries: list[bytes] = []
        self._stored: list[list[bytes]] = []
        self._frontier = Frontier.empty()
        for entry in entries:
            self.append(entry)

    def append(self, entry: bytes) -> int:
        """Add an entry; returns its leaf index."""
        self._frontier, subtree = self._frontier.append(leaf_hash(entry))
        self._entries.append(entry)
        self._stored.append(subtree)
        return len(self._entries) - 1

    @property
    def size(self) -> int:
        return len(self._entries)

    @property
    def frontier(self) -> Frontier:
        return self._frontier

    def root(self) -> bytes:
        return self._frontier.root()

    def entry(self, index: int) -> bytes:
        return self._entries[index]

    def leaf_hash(self, index: int) -> bytes:
        return self._stored[index][0]

    def stored_subtree_hashes(self, index: int) -> list[bytes]:
        """What the store keeps for leaf `index`: its level-0.. perfect subtree hashes."""
        return list(self._stored[index])

    def subtree_hashes(self, nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        out = []
        for level, index in nodes:
            if level < 0 or index < 0 or stored_at(level, index)[0] >= len(self._stored):
                raise NotFound(f"node (level {level}, index {index}) is not in a tree of size {self.size}")
            leaf, position = stored_at(level, index)
            out.append(self._stored[leaf][position])
        return out
