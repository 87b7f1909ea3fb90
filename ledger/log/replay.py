"""The one replay of a log: chain links, entry hashes, bodies and index columns, leaf hashes, the Merkle frontier and
stored subtree hashes, the roots at given sizes and the head. Audit, signing, export and import, the auditor's
re-reads and proofs all check a log through it (issue #24), each in its own words (`Wording`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.errors import VerificationError
from ledger.intake import derive_index
from ledger.log.entry import ENCODING_VERSION, GENESIS_HASH, HASH_SIZE, Entry, EntryKind, LogHead, chain_hash
from ledger.log.merkle import Frontier, leaf_hash, node_hash
from ledger.ports import IndexColumns
from ledger.timeutil import format_micros

__all__ = [
    "EXPORT_FILE",
    "RAW_ROW",
    "SIGNING",
    "STORED",
    "Replay",
    "ReplayError",
    "Wording",
    "check_chain",
]

# A raw row as a store hands it over for `Replay.rows` (storage.sql.audit_reads.AUDIT_COLUMNS names its columns).
RAW_ROW = (
    "sequence",
    "kind",
    "recorded_at",
    "body",
    "previous_hash",
    "entry_hash",
    "subtree_hashes",
    *IndexColumns._fields,
)


class ReplayError(VerificationError):
    """A log that does not replay: `sequence` is the first bad entry (for a bad head, the last entry or the size)."""

    def __init__(self, sequence: int, message: str) -> None:
        super().__init__(message)
        self.sequence = sequence


@dataclass(frozen=True)
class Wording:
    """How a caller names what failed: format strings over log, seq, expected, previous (seq - 1), state, kind,
    error, diff, key, entry_log, size and stored. The checks are the same whatever the words."""

    gap: str = "entry {log}#{expected} is {state} (next stored is #{seq})"
    link: str = "entry {log}#{seq}: previous hash does not match entry #{previous}'s hash"
    hash: str = "entry {log}#{seq}: stored hash does not match its bytes (body or header altered)"
    body: str = "entry {log}#{seq}: body is not a valid {kind} body ({error})"
    index: str = "entry {log}#{seq}: index columns differ from the body ({diff})"
    key_repeated: str = "entry {log}#{seq}: idempotency key {key!r} appears twice in the log (R24)"
    foreign: str = "entry {log}#{seq}: belongs to log {entry_log!r}, expected an entry of {log!r}"
    subtrees: str = "entry {log}#{seq}: stored Merkle subtree hashes do not match the entries"
    head_size: str = "log {log}: head says {size} entries but {stored} are stored (truncated or extended)"
    head_hash: str = "log {log}: head hash does not match entry #{previous}"
    head_root: str = "log {log}: head's Merkle root does not match the entries"


STORED = Wording()  # a store's rows (audit verify)
EXPORT_FILE = Wording(  # the lines of an export file (ledger.export)
    gap="entry {log}#{seq}: expected sequence {expected} (entries missing, repeated or out of order)",
    hash="entry {log}#{seq}: entry hash does not match its bytes (body or header altered)",
    head_size="log {log}: the header says {size} entries, {stored} follow",
    head_hash="log {log}: the header's head hash is not the hash of its last entry",
    head_root="log {log}: the header's Merkle root does not match the entries",
)
SIGNING = Wording(  # what a signer re-hashes since the last checkpoint (ledger.log.signing), after "refusing to sign"
    gap="entry #{expected} is missing (next stored is #{seq})",
    link="entry #{seq} does not chain to entry #{previous} (entry altered)",
    hash="entry #{seq} does not chain to entry #{previous} (entry altered)",
    subtrees="entry #{seq}: stored Merkle subtree hashes do not match the entries",
    head_size="the head says {size} entries but only {stored} are stored",
    head_hash="the log head does not match its entries",
    head_root="the log head does not match its entries",
)


def check_chain(entry: Entry) -> None:
    """One entry's own chain link, alone: entry_hash = SHA-256(previous_hash || entry bytes), both 32 bytes."""
    where = f"entry {entry.log_id}#{entry.sequence}"
    for what, value in (("previous hash", entry.previous_hash), ("entry hash", entry.entry_hash)):
        if len(value) != HASH_SIZE:
            raise VerificationError(f"{where}: {what} is {len(value)} bytes, expected {HASH_SIZE}")
    if chain_hash(entry.previous_hash, entry.encoded()) != entry.entry_hash:
        raise VerificationError(f"{where}: entry hash is not SHA-256(previous hash || entry bytes)")


class Replay:
    """One log replayed so far: the next sequence expected, the chain head and the Merkle frontier.

    `entry` is the reference check of one entry. `rows` does the same checks on raw rows (RAW_ROW) with bytes,
    hashlib and the frontier's hash list directly, building no per-entry objects; any row it would not accept
    (a failed check, an unexpected type) goes through `entry`, so failures and their messages are the reference's.

    A replay from entry 0 knows the whole frontier. One from `start` > 0 is given the frontier there (a signer's,
    from the stored nodes it checked against its last checkpoint), or else lacks the part left of `start` (an audit
    helper's: see `join`). `bodies` checks each body parses and derives the stored index columns; `unique_keys`
    refuses an idempotency key seen before in the replay (R24; a store's unique index does that for its rows).
    """

    def __init__(
        self,
        log_id: str,
        start: int = 0,
        previous: bytes = GENESIS_HASH,
        roots_at: frozenset[int] = frozenset(),
        *,
        frontier: Frontier | None = None,
        wording: Wording = STORED,
        bodies: bool = True,
        unique_keys: bool = False,
    ) -> None:
        self.log_id = log_id
        self.expected = start
        self.previous = previous
        self.stack: list[bytes] = [] if frontier is None else list(frontier.hashes)  # largest subtree first
        self.roots_at = roots_at
        self.roots: dict[int, bytes] = {}
        # A helper's roots_at inside its part: (size, its own frontier then, how many _Deferred came before).
        self.partial_roots: list[tuple[int, list[bytes], int]] = []
        # A check starting inside the log without its frontier (a helper's) lacks the part left of `start`: where
        # a leaf's subtrees reach into it, it checks what it can and leaves the rest here for the joiner (_Deferred).
        self.deferred: list[_Deferred] | None = [] if start and frontier is None else None
        self.words = wording
        self.bodies = bodies
        self.keys: set[str] | None = set() if unique_keys else None
        self.index: IndexColumns | None = None  # the last entry's index columns, derived from its body
        log = log_id.encode()
        self._framing = _framing(bytes((ENCODING_VERSION,)) + len(log).to_bytes(2, "big") + log)
        self._minutes: dict[int, str] = {}

    def _bad(self, sequence: int, template: str, **fields: Any) -> ReplayError:
        """The failure at `sequence`; `fields` fill the template (and may name another `seq` to show)."""
        return ReplayError(
            sequence, template.format(**{"log": self.log_id, "seq": sequence, "previous": sequence - 1, **fields})
        )

    def _minute(self, minute: int) -> str:
        """format_micros' text up to the seconds of a minute ("2026-09-20T12:00:"); "" where it does not round-trip
        through parse_rfc3339_micros (before 1970 or past 9999), so no body matches and the reference check decides."""
        if not 0 <= minute < _LAST_MINUTE:
            return ""
        if len(self._minutes) >= 100_000:
            self._minutes.clear()
        prefix = self._minutes[minute] = format_micros(minute * 60_000_000)[:17]
        return prefix

    def root(self) -> bytes:
        return self.frontier().root()

    def frontier(self) -> Frontier:
        """The Merkle frontier of the entries replayed (from entry 0, or from a given frontier)."""
        return Frontier(self.expected, tuple(self.stack))

    def head(self, head: LogHead) -> None:
        """After the last entry: the head must describe exactly the entries replayed."""
        expected = self.expected
        words = self.words
        if expected != head.size:
            raise self._bad(expected, words.head_size, size=head.size, stored=expected)
        if head.head_hash != self.previous:
            raise self._bad(expected - 1, words.head_hash)
        if head.root_hash != self.root():
            raise self._bad(expected - 1, words.head_root)

    def add(self, entry: Entry, stored_index: IndexColumns | None = None, subtrees: bytes | None = None) -> bytes:
        """`entry`, then the root noted if the log has reached a size of `roots_at`; returns its subtree hashes."""
        nodes = self.entry(entry, stored_index, subtrees)
        if self.expected in self.roots_at:
            self.note_root()
        return nodes

    def entry(self, entry: Entry, stored_index: IndexColumns | None = None, subtrees: bytes | None = None) -> bytes:
        """Check the next entry against its stored index columns and subtree hashes, where the source has them (the
        API has neither: None). Returns the subtree hashes the entry closes, level 0 first (from entry 0 on)."""
        words = self.words
        previous = self.previous
        sequence = entry.sequence
        if entry.log_id != self.log_id:
            raise self._bad(sequence, words.foreign, entry_log=entry.log_id)
        if sequence != self.expected:
            state = "missing" if sequence > self.expected else "out of order"
            raise self._bad(self.expected, words.gap, seq=sequence, expected=self.expected, state=state)
        if entry.previous_hash != previous:
            raise self._bad(sequence, words.link)
        encoded = entry.encoded()
        if chain_hash(previous, encoded) != entry.entry_hash:
            raise self._bad(sequence, words.hash)
        if self.bodies:
            try:
                derived = derive_index(entry.kind, json.loads(entry.body))
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                raise self._bad(sequence, words.body, kind=entry.kind.value, error=err) from err
            if stored_index is not None and derived != stored_index:
                raise self._bad(sequence, words.index, diff=_diff(derived, stored_index))
            self.index = derived
            keys = self.keys
            if keys is not None and derived.event_id is not None:
                if derived.event_id in keys:
                    raise self._bad(sequence, words.key_repeated, key=derived.event_id)
                keys.add(derived.event_id)
        # The leaf closes one perfect subtree per trailing 1-bit of its index (ledger.log.merkle.Frontier.append).
        stack = self.stack
        merges = (sequence ^ (sequence + 1)).bit_length() - 1
        local = min(merges, len(stack)) if self.deferred is not None else merges
        h = leaf_hash(encoded)
        expected_subtrees = [h]
        for k in range(1, local + 1):
            h = node_hash(stack[-k], h)
            expected_subtrees.append(h)
        closed = b"".join(expected_subtrees)
        if local < merges and subtrees is not None:
            if subtrees[: len(closed)] != closed:
                raise self._bad(sequence, words.subtrees)
            assert self.deferred is not None
            self.deferred.append(_Deferred(sequence, h, merges - local, subtrees[len(closed) :], previous, list(stack)))
            stack.clear()  # what the leaf closes now includes nodes left of `start`: they are the joiner's
        else:
            if subtrees is not None and closed != subtrees:
                raise self._bad(sequence, words.subtrees)
            if merges:
                del stack[-merges:]
            stack.append(h)
        self.previous = entry.entry_hash
        self.expected = sequence + 1
        return closed

    def note_root(self) -> None:
        if self.deferred is None:
            self.roots[self.expected] = self.root()
        else:  # the helper lacks the frontier left of its start: the joiner completes it
            self.partial_roots.append((self.expected, list(self.stack), len(self.deferred)))

    def page(self, rows: Sequence[Sequence[Any]]) -> None:
        """`rows`, cut where the log reaches a size of roots_at to note the root there."""
        base = self.expected
        start = 0
        for size in sorted(s for s in self.roots_at if base < s <= base + len(rows)):
            self.rows(rows[start : size - base])
            start = size - base
            if self.expected == size:
                self.note_root()
        self.rows(rows[start:] if start else rows)

    def join(self, helper: HelperResult) -> None:
        """Take over from a helper that checked the rest of the log from where this check stands, raising the
        first failure a single pass would have met: at the seam, in a subtree spanning it, or the helper's own."""
        if helper.first_previous is not None and helper.first_previous != self.previous:
            seq = self.expected
            raise self._bad(seq, self.words.link)
        stack = self.stack
        partial_roots = iter(helper.partial_roots)
        partial = next(partial_roots, None)
        for replayed, deferred in enumerate(helper.deferred):
            while partial is not None and partial[2] == replayed:
                self.roots[partial[0]] = Frontier(partial[0], (*stack, *partial[1])).root()
                partial = next(partial_roots, None)
            sequence = deferred.sequence
            if helper.failure is not None and sequence >= helper.failure[0]:
                break
            h = deferred.hash
            nodes = []
            for k in range(1, deferred.merges + 1):
                h = node_hash(stack[-k], h)
                nodes.append(h)
            if b"".join(nodes) != deferred.stored:
                stack.extend(deferred.stack)
                self.expected = sequence
                self.previous = deferred.previous
                raise self._bad(sequence, self.words.subtrees)
            del stack[-deferred.merges :]
            stack.append(h)
        while partial is not None and (helper.failure is None or partial[0] <= helper.failure[0]):
            self.roots[partial[0]] = Frontier(partial[0], (*stack, *partial[1])).root()
            partial = next(partial_roots, None)
        stack.extend(helper.stack)
        if helper.expected != self.expected:  # else it verified nothing, and its previous hash is only a guess
            self.expected = helper.expected
            self.previous = helper.previous
        if helper.failure is not None:
            raise ReplayError(*helper.failure)

    def unreadable(self, err: Exception) -> ReplayError:
        """The next entry's row could not even be decoded (its kind, its numbers): the failure to report."""
        return ReplayError(self.expected, f"entry {self.log_id}#{self.expected}: stored row is unreadable ({err})")

    def row(self, row: Sequence[Any]) -> None:
        """The reference check of one raw row (RAW_ROW), read as a store's audit_rows would read it."""
        try:
            seq, kind, recorded_at, body, prev, entry_hash, subtrees, *index = row
            entry = Entry(
                self.log_id, int(seq), EntryKind(kind), int(recorded_at), _bytes(body), _bytes(prev), _bytes(entry_hash)
            )
            stored = IndexColumns(*index)
            nodes = _bytes(subtrees)
        except (ValueError, TypeError) as err:  # a stored row that cannot even be decoded (kind, numbers)
            raise self.unreadable(err) from err
        try:
            self.entry(entry, stored, nodes)
        except (ValueError, TypeError) as err:
            raise self.unreadable(err) from err

    def rows(self, rows: Sequence[Sequence[Any]]) -> None:
        """Check a page of raw rows (RAW_ROW) in sequence order: the verification hot loop."""
        if self.keys is not None or not self.bodies:  # the hot loop checks as audit does: every body, no key set
            for each in rows:
                self.row(each)
            return
        sha256 = hashlib.sha256
        scan = _SCAN
        framing = self._framing
        minutes = self._minutes
        seconds = _SECONDS
        expected = self.expected
        previous = self.previous
        stack = self.stack
        row: Sequence[Any] = ()
        remaining = iter(rows)
        while True:
            try:
                for row in remaining:
                    (
                        seq,
                        kind,
                        recorded_at,
                        body,
                        prev,
                        entry_hash,
                        subtrees,
                        org,
                        endpoint,
                        workload,
                        request,
                        at,
                        key,
                    ) = row
                    if seq != expected or prev != previous:
                        raise _Unusual
                    pack, kind_field = framing[kind]
                    encoded = pack(seq, kind_field, recorded_at, len(body)) + body
                    if sha256(previous + encoded).digest() != entry_hash:
                        raise _Unusual
                    # json.loads(body), less its encoding detection and wrappers: a body it would read differently
                    # (a BOM, UTF-16, white space around the object) fails one of these checks instead.
                    text = body.decode()
                    fields, end = scan(text, 0)
                    if end != len(text):
                        raise _Unusual
                    if kind == "EVENT":
                        if (
                            fields.get("org_id") != org
                            or fields.get("endpoint_id") != endpoint
                            or fields.get("workload_id") != workload
                            or fields.get("request_id") != request
                            or fields.get("event_id") != key
                        ):
                            raise _Unusual
                        when = fields.get("occurred_at")
                        if when is None:
                            if at is not None or "occurred_at" in fields:
                                raise _Unusual
                        else:
                            # Rather than parse the body's time, write the column's as the ledger does and compare.
                            if type(at) is not int:
                                raise _Unusual
                            minute, rest = divmod(at, 60_000_000)
                            prefix = minutes.get(minute) or self._minute(minute)
                            if when != prefix + seconds(*divmod(rest, 1_000_000)):
                                raise _Unusual
                    elif derive_index(EntryKind(kind), fields) != IndexColumns(
                        org, endpoint, workload, request, at, key
                    ):
                        raise _Unusual
                    h = sha256(b"\x00" + encoded).digest()
                    if seq & 1:
                        merges = (seq ^ (seq + 1)).bit_length() - 1
                        nodes = [h]
                        for k in range(1, merges + 1):
                            h = sha256(b"\x01" + stack[-k] + h).digest()
                            nodes.append(h)
                        if subtrees != b"".join(nodes):
                            raise _Unusual
                        del stack[-merges:]
                    elif subtrees != h:
                        raise _Unusual
                    stack.append(h)
                    previous = entry_hash
                    expected += 1
                break
            except ReplayError:
                raise
            except Exception:  # whatever is odd about this row, the reference check decides
                self.expected = expected
                self.previous = previous
                self.row(row)
                expected = self.expected
                previous = self.previous
        self.expected = expected
        self.previous = previous


@dataclass(frozen=True)
class _Deferred:
    """A leaf whose subtrees reach left of a helper's start: checked up to `hash`, `merges` more to go."""

    sequence: int
    hash: bytes
    merges: int
    stored: bytes  # the stored subtree hashes still to check
    previous: bytes  # the chain and the helper's own frontier before this leaf, should it fail
    stack: list[bytes]


@dataclass(frozen=True)
class HelperResult:
    """What a helper process found over its part of a log (see Replay.join)."""

    first_previous: bytes | None  # the previous hash its first row stores, None if that row was not the one expected
    expected: int
    previous: bytes
    stack: list[bytes]
    deferred: list[_Deferred]
    partial_roots: list[tuple[int, list[bytes], int]]
    failure: tuple[int, str] | None


# What json.loads runs, configured as json.loads' default decoder is.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_SECONDS = "{:02d}.{:06d}Z".format  # the rest of format_micros' text after the minute, from (second, micros)
_LAST_MINUTE = 253_402_300_800_000_000 // 60_000_000  # 10000-01-01T00:00Z


class _Unusual(Exception):
    """A row the hot loop does not accept as it is: the reference check decides what, if anything, is wrong."""


def _framing(log_prefix: bytes) -> dict[str, tuple[Callable[[int, bytes, int, int], bytes], bytes]]:
    """For each entry kind: a pack(sequence, kind field, recorded_at, body length) giving the entry bytes up to the
    body (ledger.entry.entry_bytes, docs/encoding.md) for one log, and the kind field to pass it."""
    framing: dict[str, tuple[Callable[[int, bytes, int, int], bytes], bytes]] = {}
    for kind in EntryKind:
        field = bytes((len(kind.value),)) + kind.value.encode()
        fmt = struct.Struct(f">{len(log_prefix)}sQ{len(field)}sqI")
        framing[kind.value] = (functools.partial(fmt.pack, log_prefix), field)
    return framing


def _bytes(value: Any) -> bytes:
    """Binary columns as bytes, even when a hand edit stored text there (audit must report it, not crash)."""
    return value.encode() if isinstance(value, str) else bytes(value)


def _diff(derived: object, stored: object) -> str:
    names = ("org_id", "endpoint_id", "workload_id", "request_id", "occurred_at", "event_id")
    return ", ".join(
        f"{n}: body says {getattr(derived, n)!r}, column says {getattr(stored, n)!r}"
        for n in names
        if getattr(derived, n) != getattr(stored, n)
    )
