"""Whole logs as JSON Lines: export every stored field, and import only what re-verifies hash by hash.

The file is one header line, then one line per entry, log after log in sequence order:

    {"encoding_version":1,"format":"usage-ledger-export","logs":[{"head_hash":"…","log_id":"org/acme",
     "root_hash":"…","size":2772}],"version":1}
    {"body":"{\"development\":false,…}","entry_hash":"…","kind":"EVENT","log_id":"org/acme",
     "previous_hash":"0000…","recorded_at":1791277200000000,"sequence":0}

`body` is the stored bytes as a UTF-8 string (canonical JSON always is), or `body_base64` for bytes that are not
UTF-8; `recorded_at` is the hashed integer (µs since the epoch, UTC); hashes are lowercase hex. Index columns and
Merkle subtree hashes are not exported: they are derived from the entries, and import derives them again.

Version 2 adds each log's signed checkpoints to its header entry, those of sizes up to the exported size, smallest
first: `"checkpoints":[{"note":"…","root_hash":"…","signed_at":1791277200000000,"size":2772}]`. Import checks each
note against its size and root, each root against the root rebuilt from the entries at that size, and with a
verifier key each signature, then stores them beside the entries. Version 1 files (no checkpoints) still import.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ledger.errors import LedgerError, VerificationError
from ledger.log.entry import ENCODING_VERSION, HASH_SIZE, Entry, EntryKind, LogHead
from ledger.log.merkle import EMPTY_ROOT, Frontier
from ledger.log.note import NoteVerifier
from ledger.log.proofs import SignedCheckpoint
from ledger.log.replay import EXPORT_FILE, Replay, ReplayError
from ledger.log.signing import StoredCheckpoint
from ledger.ports import IndexColumns, LogImporter

EXPORT_FORMAT = "usage-ledger-export"
EXPORT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: no checkpoints
_ENTRY_FIELDS = frozenset({"log_id", "sequence", "kind", "recorded_at", "previous_hash", "entry_hash"})
_BODY_FIELDS = frozenset({"body", "body_base64"})


class ExportSource(Protocol):
    """What export reads: a SqlStore, or the API through an adapter (client/cli_export.py)."""

    def head(self, log_id: str) -> LogHead: ...

    def iter_entries(self, log_id: str, start: int = 0, stop: int | None = None) -> Iterator[Entry]: ...

    def checkpoints(self, log_id: str, max_size: int) -> list[StoredCheckpoint]:
        """The log's signed checkpoints of sizes up to `max_size`, smallest first (those the source can list)."""
        ...


class ImportTargetNotEmpty(LedgerError):
    """Import only creates logs: one of the file's logs already exists in the target database."""

    reason = "IMPORT_TARGET_NOT_EMPTY"


# -- export -----------------------------------------------------------------------------------------------------


def _dumps(record: dict[str, Any]) -> str:
    # Sorted keys and no spaces: the same log always exports to the same bytes, so files can be compared.
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def header_record(heads: Sequence[LogHead], checkpoints: Mapping[str, Sequence[StoredCheckpoint]]) -> dict[str, Any]:
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "encoding_version": ENCODING_VERSION,
        "logs": [
            {
                "log_id": h.log_id,
                "size": h.size,
                "head_hash": h.head_hash.hex(),
                "root_hash": h.root_hash.hex(),
                "checkpoints": [
                    {"size": c.size, "root_hash": c.root_hash.hex(), "signed_at": c.signed_at, "note": c.note}
                    for c in checkpoints.get(h.log_id, ())
                ],
            }
            for h in heads
        ],
    }


def entry_record(entry: Entry) -> dict[str, Any]:
    record: dict[str, Any] = {
        "log_id": entry.log_id,
        "sequence": entry.sequence,
        "kind": entry.kind.value,
        "recorded_at": entry.recorded_at,
        "previous_hash": entry.previous_hash.hex(),
        "entry_hash": entry.entry_hash.hex(),
    }
    try:
        record["body"] = entry.body.decode("utf-8")
    except UnicodeDecodeError:
        record["body_base64"] = base64.b64encode(entry.body).decode("ascii")
    return record


def export_lines(source: ExportSource, log_ids: Sequence[str]) -> Iterator[str]:
    """The header and one line per entry (without newlines), each log up to its head when the export began.

    Every entry is checked as it goes out, so a damaged store fails the export instead of producing a file
    that import would refuse.
    """
    if len(set(log_ids)) != len(log_ids):
        raise ValueError("each log may be exported once per file")
    heads = [source.head(log_id) for log_id in log_ids]
    signed = {head.log_id: source.checkpoints(head.log_id, head.size) for head in heads}
    yield _dumps(header_record(heads, signed))
    for head in heads:
        checker = _FileLog(head.log_id, {c.size: c.root_hash for c in signed[head.log_id]})
        for entry in source.iter_entries(head.log_id, 0, head.size):
            try:
                checker.add(entry)
            except (_Bad, ReplayError) as bad:
                raise VerificationError(f"cannot export {head.log_id}: {bad}") from None
            yield _dumps(entry_record(entry))
        try:
            checker.finish(head)
        except (_Bad, ReplayError) as bad:
            raise VerificationError(f"cannot export {head.log_id}: {bad}") from None


# -- verification -----------------------------------------------------------------------------------------------


class _Bad(Exception):
    """A failed check; the reader adds the line number."""


class _FileLog:
    """One log of a file replayed from entry 0 (ledger.log.replay, in the file's words: no duplicate idempotency
    key either, R24), and the root at each size a signed checkpoint claims (`roots`, by size)."""

    def __init__(self, log_id: str, roots: Mapping[int, bytes] | None = None) -> None:
        self.log_id = log_id
        self.claimed = dict(roots or {})
        self.replay = Replay(log_id, roots_at=frozenset(self.claimed), wording=EXPORT_FILE, unique_keys=True)
        self._check_root()

    @property
    def size(self) -> int:
        return self.replay.expected

    @property
    def frontier(self) -> Frontier:
        return self.replay.frontier()

    def _check_root(self) -> None:
        size = self.size
        claimed = self.claimed.get(size)
        root = self.replay.roots.get(size, EMPTY_ROOT)
        if claimed is not None and root != claimed:
            raise _Bad(
                f"log {self.log_id}: the signed checkpoint of size {size} has root {claimed.hex()[:16]}…, "
                f"not the root of the first {size} entries ({root.hex()[:16]}…)"
            )

    def add(self, entry: Entry) -> tuple[IndexColumns, bytes]:
        """Check the next entry; returns its derived index columns and Merkle subtree hashes."""
        subtrees = self.replay.add(entry)
        self._check_root()
        assert self.replay.index is not None  # the replay checks bodies
        return self.replay.index, subtrees

    def finish(self, head: LogHead) -> None:
        self.replay.head(head)


@dataclass(frozen=True, slots=True)
class VerifiedEntry:
    """An entry that chained, hashed and parsed, with the columns the store derives for it."""

    line: int
    entry: Entry
    index: IndexColumns
    subtree_hashes: bytes


@dataclass(frozen=True, slots=True)
class VerifiedLog:
    head: LogHead
    frontier: Frontier
    checkpoints: tuple[StoredCheckpoint, ...] = ()


def _hash(record: dict[str, Any], name: str) -> bytes:
    value = record.get(name)
    if not isinstance(value, str) or len(value) != 2 * HASH_SIZE:
        raise _Bad(f"{name} must be {2 * HASH_SIZE} hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError as err:
        raise _Bad(f"{name} must be {2 * HASH_SIZE} hex digits") from err


def _natural(record: dict[str, Any], name: str) -> int:
    value = record.get(name)
    # bool is an int in Python; a JSON true is not a sequence number.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Bad(f"{name} must be a whole number, got {value!r}")
    return value


def _parse_checkpoints(
    log: dict[str, Any], head: LogHead, verifier: NoteVerifier | None, ledger_name: str | None
) -> tuple[StoredCheckpoint, ...]:
    """A log's checkpoints from the header: each note read (with `verifier`, its signature checked) and matching
    its size and root, sizes rising and none past the log's."""
    records = log.get("checkpoints", [])
    if not isinstance(records, list):
        raise _Bad(f"log {head.log_id}: checkpoints must be a list")
    found: list[StoredCheckpoint] = []
    for record in records:
        where = f"log {head.log_id}: checkpoint {len(found) + 1}"
        if not isinstance(record, dict) or not isinstance(record.get("note"), str):
            raise _Bad(f"{where}: needs size, root_hash, signed_at and the signed note")
        size, root, signed_at = _natural(record, "size"), _hash(record, "root_hash"), _natural(record, "signed_at")
        try:
            opened = (
                SignedCheckpoint.open(head.log_id, record["note"], verifier, ledger_name)
                if verifier is not None
                else SignedCheckpoint.parse(head.log_id, record["note"])
            )
        except VerificationError as err:
            raise _Bad(f"{where} (size {size}): {err}") from None
        if (opened.size, opened.root_hash) != (size, root):
            raise _Bad(
                f"{where}: its note is of size {opened.size}, root {opened.root_hash.hex()[:16]}…, not the "
                f"size {size} and root {root.hex()[:16]}… listed with it"
            )
        if size > head.size or (found and size <= found[-1].size):
            raise _Bad(f"{where}: size {size} is out of order or past the log's {head.size} entries")
        found.append(StoredCheckpoint(head.log_id, size, root, record["note"], signed_at))
    return tuple(found)


def _parse_header(
    record: Any, verifier: NoteVerifier | None = None, ledger_name: str | None = None
) -> list[tuple[LogHead, tuple[StoredCheckpoint, ...]]]:
    if not isinstance(record, dict) or record.get("format") != EXPORT_FORMAT:
        raise _Bad(f"not a ledger export: the first line must be the {EXPORT_FORMAT!r} header")
    if record.get("version") not in READABLE_VERSIONS:
        raise _Bad(
            f"export version {record.get('version')!r} is not one this ledger reads "
            f"({', '.join(map(str, READABLE_VERSIONS))})"
        )
    if record.get("encoding_version") != ENCODING_VERSION:
        raise _Bad(f"entry encoding version {record.get('encoding_version')!r} is not {ENCODING_VERSION}")
    logs = record.get("logs")
    if not isinstance(logs, list) or not logs:
        raise _Bad("the header lists no logs")
    heads = []
    for log in logs:
        if not isinstance(log, dict) or not isinstance(log.get("log_id"), str) or not log["log_id"]:
            raise _Bad("each log in the header needs a log_id")
        head = LogHead(log["log_id"], _natural(log, "size"), _hash(log, "head_hash"), _hash(log, "root_hash"))
        heads.append((head, _parse_checkpoints(log, head, verifier, ledger_name)))
    if len({h.log_id for h, _ in heads}) != len(heads):
        raise _Bad("the header lists a log twice")
    return heads


def _parse_entry(record: Any) -> Entry:
    if not isinstance(record, dict):
        raise _Bad("each line after the header must be a JSON object (one entry)")
    fields = set(record)
    if missing := sorted(_ENTRY_FIELDS - fields):
        raise _Bad(f"missing {', '.join(missing)}")
    if len(fields & _BODY_FIELDS) != 1:
        raise _Bad("needs exactly one of body (UTF-8 text) or body_base64")
    if unknown := sorted(fields - _ENTRY_FIELDS - _BODY_FIELDS):
        raise _Bad(f"unknown field {', '.join(unknown)}")
    try:
        kind = EntryKind(record["kind"])
    except ValueError as err:
        raise _Bad(f"kind {record['kind']!r} is not an entry kind") from err
    if not isinstance(record["log_id"], str):
        raise _Bad("log_id must be a string")
    recorded_at = record["recorded_at"]
    if not isinstance(recorded_at, int) or isinstance(recorded_at, bool):
        raise _Bad("recorded_at must be whole microseconds since the epoch")
    try:
        if "body" in record:
            if not isinstance(record["body"], str):
                raise _Bad("body must be a string")
            body = record["body"].encode("utf-8")
        else:
            body = base64.b64decode(record["body_base64"], validate=True)
    except (UnicodeEncodeError, binascii.Error, TypeError, ValueError) as err:
        raise _Bad(f"body cannot be decoded ({err})") from err
    return Entry(
        log_id=record["log_id"],
        sequence=_natural(record, "sequence"),
        kind=kind,
        recorded_at=recorded_at,
        body=body,
        previous_hash=_hash(record, "previous_hash"),
        entry_hash=_hash(record, "entry_hash"),
    )


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise VerificationError(f"{path}, line {number}: not UTF-8 text ({err})") from err
            if line.strip():
                yield number, line


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise _Bad(f"not valid JSON ({err.msg} at column {err.colno})") from None


class ExportReader:
    """Reads an export file, checking each line before yielding it; raises VerificationError naming the line.
    With `verifier`, each signed checkpoint's signature is checked too (and with `ledger_name`, its origin)."""

    def __init__(self, path: Path, verifier: NoteVerifier | None = None, ledger_name: str | None = None) -> None:
        self.path = path
        self.verifier = verifier
        self.ledger_name = ledger_name
        self.logs: list[VerifiedLog] = []
        self.signed: dict[str, tuple[StoredCheckpoint, ...]] = {}

    def entries(self) -> Iterator[VerifiedEntry]:
        where = "line 1"
        try:
            lines = _numbered_lines(self.path)
            first = next(lines, None)
            if first is None:
                raise _Bad("the file is empty: not a ledger export")
            where = f"line {first[0]}"
            parsed = _parse_header(_json(first[1]), self.verifier, self.ledger_name)
            heads = [head for head, _ in parsed]
            self.signed = {head.log_id: signed for head, signed in parsed}
            position = 0
            checker = self._check(heads[0])
            for number, text in lines:
                where = f"line {number}"
                entry = _parse_entry(_json(text))
                # Logs come whole and in header order: an entry of another log closes the current one.
                while entry.log_id != checker.log_id and position + 1 < len(heads):
                    self._close(checker, heads[position])
                    position += 1
                    checker = self._check(heads[position])
                    if heads[position].size or heads[position].log_id == entry.log_id:
                        break  # a log with entries must come next; only empty logs have no lines to skip
                if entry.log_id == checker.log_id and checker.size >= heads[position].size:
                    raise _Bad(
                        f"entry {entry.log_id}#{entry.sequence}: the header lists only {heads[position].size} "
                        f"entries of {entry.log_id}"
                    )
                index, subtrees = checker.add(entry)
                yield VerifiedEntry(number, entry, index, subtrees)
            where = "end of file"
            self._close(checker, heads[position])
            for head in heads[position + 1 :]:
                self._close(self._check(head), head)
        except (_Bad, ReplayError) as bad:
            raise VerificationError(f"{self.path}, {where}: {bad}") from None

    def _check(self, head: LogHead) -> _FileLog:
        return _FileLog(head.log_id, {c.size: c.root_hash for c in self.signed[head.log_id]})

    def _close(self, checker: _FileLog, head: LogHead) -> None:
        checker.finish(head)
        self.logs.append(VerifiedLog(head, checker.frontier, self.signed[head.log_id]))


def verify_export(
    path: Path, verifier: NoteVerifier | None = None, ledger_name: str | None = None
) -> list[VerifiedLog]:
    """Check every line of an export file; returns each log's verified head, or raises naming the first bad line."""
    reader = ExportReader(path, verifier, ledger_name)
    for _ in reader.entries():
        pass
    return reader.logs


# -- import -----------------------------------------------------------------------------------------------------


def insert_verified(store: LogImporter, path: Path, logs: Sequence[VerifiedLog]) -> int:
    """Write pre-hashed entries exactly as exported, with their heads and checkpoints, all or nothing; returns the
    count. The file is read and checked again as it is written, so a file changed since `verify_export` writes
    nothing. The store only persists (storage.sql.import_log): every check is made here."""
    reader = ExportReader(path)

    def entries() -> Iterator[VerifiedEntry]:
        yield from reader.entries()
        if reader.logs != list(logs):
            raise VerificationError(f"{path} changed while it was being imported; nothing was imported")

    return store.import_logs(logs, entries())


def import_export(
    store: LogImporter, path: Path, verifier: NoteVerifier | None = None, ledger_name: str | None = None
) -> list[VerifiedLog]:
    """Verify the whole file, then insert it; nothing is written unless every hash, chain link and checkpoint
    (with `verifier`, every signature too) checks out."""
    logs = verify_export(path, verifier, ledger_name)
    insert_verified(store, path, logs)
    return logs
