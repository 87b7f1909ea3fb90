"""The usage rollups' row encodings: what a rollup row holds of a session, a storage sample or a lifecycle, and back."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ledger.events import StorageKind, UsageEvent, WorkerType, event_from_body
from ledger.rating import Session, StorageCharge, UnitRun
from ledger.rating.storage import storage_charge


@dataclass(frozen=True, slots=True)
class RolledSession:
    """What a usage query needs of one rated session: its dimensions and its priced unit runs."""

    workload_id: str
    endpoint_id: str
    workload_kind: str
    instance_type: str
    worker_type: str
    unit_seconds: int
    runs: tuple[UnitRun, ...]


@dataclass(frozen=True, slots=True)
class RolledStorage:
    seq: int
    endpoint_id: str
    workload_id: str
    storage_kind: str
    start: int
    exact_amount: Fraction
    # The sample's size and interval, for the GB-seconds a usage row shows (R13, R14); its R8 flag bills nothing.
    gigabytes: Decimal | None = None
    interval_seconds: int | None = None
    development: bool = False


def rolled_storage_charge(org_id: str, row: Any) -> StorageCharge:
    interval = int(row.interval_seconds)
    return storage_charge(
        int(row.seq),
        row.event_id,
        org_id,
        row.endpoint_id,
        row.workload_id,
        row.workspace_id,
        StorageKind(row.storage_kind),
        row.volume_id,
        Decimal(row.gigabytes),
        interval,
        int(row.start) + interval * 1_000_000,
        development=bool(row.development),
    )


def later(first: int | None, second: int | None) -> int | None:
    if first is None:
        return second
    return first if second is None else max(first, second)


def int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def load_lifecycle(blob: bytes, hashes: dict[int, bytes] | None = None) -> list[tuple[UsageEvent, int]]:
    """A workload's kept lifecycle events; each entry's hash goes into `hashes` (by seq) when given."""
    items = json.loads(blob)
    if hashes is not None:
        hashes.update((int(seq), bytes.fromhex(entry_hash)) for seq, _, entry_hash in items)
    return [(event_from_body(body), int(seq)) for seq, body, _ in items]


def lifecycle_blob(lifecycle: list[tuple[UsageEvent, int]], hashes: dict[int, bytes]) -> bytes:
    """[seq, body, entry hash] per lifecycle event: every hash is known, from the entry or the row it was kept in."""
    items = [[seq, event.body(), hashes[seq].hex()] for event, seq in lifecycle]
    return json.dumps(items, separators=(",", ":")).encode()


def session_blob(session: Session) -> bytes:
    runs = [
        [
            r.first_unit_index,
            r.count,
            r.unit_seconds,
            r.first_unit_start,
            r.price_version,
            str(r.rate_per_second),
            r.worker_type.value,
            str(r.amount),
        ]
        for r in session.runs
    ]
    return json.dumps({"unit_seconds": session.unit_seconds, "runs": runs}, separators=(",", ":")).encode()


def decode_run(data: list[Any]) -> UnitRun:
    return UnitRun(
        first_unit_index=int(data[0]),
        count=int(data[1]),
        unit_seconds=int(data[2]),
        first_unit_start=int(data[3]),
        price_version=int(data[4]),
        rate_per_second=Decimal(data[5]),
        worker_type=WorkerType(data[6]),
        amount=Decimal(data[7]),
    )


def rolled_session(row: Any, unit_seconds: int, runs: Iterable[UnitRun]) -> RolledSession:
    return RolledSession(
        row.workload_id,
        row.endpoint_id,
        row.workload_kind,
        row.instance_type,
        row.worker_type,
        unit_seconds,
        tuple(runs),
    )
