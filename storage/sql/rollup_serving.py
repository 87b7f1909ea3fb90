"""Per-workload request summaries and serving unions: the rollups behind a fast dispute lookup (R25, R27).

A session's R25 split needs its serving time: the measure of the union of its requests' in-flight intervals after
READY. Summing that from a long replica's every request event took seconds on a big log, so the rollups keep it:

- `rollup_requests`, one row per workload: the requests still in flight (a start and no finish yet), finishes
  whose start has not been seen, how many requests there were, the longest one, and whether anything was
  irregular (a request started or finished twice, or finishing before it started);
- `rollup_serving`, one row per workload and hour: the union of the closed requests' intervals in that hour
  (merged, as packed integers) and its measure, so the serving time of any span is a sum of hour measures plus
  at most two partial hours;
- `rollup_request_spans`, one row per request: when and at which entry it started and finished, so a lookup
  pairs the requests near its window without reading their entries.

All three are kept in step with the log by storage.sql.rollups as it tails it, in whatever order events
arrive (R22). They summarise exactly what the rating engine computes when the workload's requests are regular;
when they are not, `RequestSummary.regular` says so and the lookup re-rates the workload from its entries instead.
"""

from __future__ import annotations

import functools
import struct
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import BigInteger, String, and_, bindparam, cast, delete, func, null, select, text, union_all
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

# The values live in the core; named here too (explicitly re-exported) for the rollups that build them.
from ledger.rating.serving_time import Interval
from ledger.rating.serving_time import RequestMark as RequestMark
from ledger.rating.serving_time import RequestSummary as RequestSummary
from ledger.rating.serving_time import StartedSpan as StartedSpan
from storage.sql.driver import DriverQuery
from storage.sql.lists import member_of
from storage.sql.schema import entries, rollup_request_spans, rollup_requests, rollup_serving

HOUR = 3600 * 1_000_000
_LOOKUP_CHUNK = 500


def _pack(intervals: Sequence[Interval]) -> bytes:
    flat = [value for interval in intervals for value in interval]
    return struct.pack(f"<{len(flat)}q", *flat)


def _unpack(blob: bytes) -> list[Interval]:
    flat = struct.unpack(f"<{len(blob) // 8}q", blob)
    return list(zip(flat[0::2], flat[1::2], strict=True))


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """The union of half-open intervals as sorted, disjoint, non-touching intervals (empty ones dropped)."""
    merged: list[list[int]] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def _hour_pieces(interval: Interval) -> Iterable[tuple[int, Interval]]:
    start, end = interval
    hour = start // HOUR * HOUR
    while hour < end:
        yield hour, (max(start, hour), min(end, hour + HOUR))
        hour += HOUR


# -- maintenance (called by UsageRollups inside its catch-up transaction) ----------------------------------------


def apply_request_events(
    conn: Connection, log_id: str, events: dict[str, list[RequestMark]], hashes: dict[int, bytes]
) -> None:
    """Fold a chunk of request events (by workload) into the summaries, the serving unions and the request spans;
    `hashes` are the events' entry hashes by sequence number."""
    if not events:
        return
    workloads = sorted(events)
    summaries = _load_summaries(conn, log_id, workloads)
    closed: dict[str, list[Interval]] = defaultdict(list)
    # Request IDs an earlier chunk may already have closed: a start not in flight, a finish with no start in flight.
    # Replicas of an org may use the same request ID (the engine pairs requests per workload, R26), so one ID can be
    # unsure on several workloads in a chunk: each is kept (one workload per ID let a later workload hide an earlier
    # one's reuse, and its summary stayed regular where one pass over the log marks it irregular).
    unsure: dict[str, set[str]] = defaultdict(set)
    for workload_id in workloads:
        summary = summaries.setdefault(workload_id, RequestSummary())
        closed_now: set[str] = set()  # closed in this chunk (earlier chunks: _reused_request_ids)
        for mark in sorted(events[workload_id]):
            request_id = mark[2]
            if request_id in closed_now:
                summary.irregular = True
            elif request_id not in summary.in_flight and request_id not in summary.unmatched_finishes:
                unsure[request_id].add(workload_id)
            interval = summary.take(mark)
            if interval is not None:
                closed[workload_id].append(interval)
                closed_now.add(request_id)
    in_chunk = Counter(mark[2] for marks in events.values() for mark in marks)
    for workload_id in _reused_request_ids(conn, log_id, unsure, in_chunk):
        summaries[workload_id].irregular = True
    for workload_id, intervals in closed.items():
        summaries[workload_id].serving_micros += _add_serving(conn, log_id, workload_id, intervals)
    _add_spans(conn, log_id, events, hashes)
    conn.execute(
        delete(rollup_requests).where(rollup_requests.c.log_id == log_id, rollup_requests.c.workload_id.in_(workloads))
    )
    conn.execute(
        rollup_requests.insert(),
        [{"log_id": log_id, "workload_id": w, "summary": summaries[w].encode()} for w in workloads],
    )


def _add_spans(conn: Connection, log_id: str, events: dict[str, list[RequestMark]], hashes: dict[int, bytes]) -> None:
    """Record each request's start and finish; what an earlier chunk recorded stays (the first one seen wins)."""
    spans: dict[tuple[str, str], list[Any]] = {}
    for workload_id, marks in events.items():
        for seq, at, request_id, finished in sorted(marks):
            span = spans.setdefault((workload_id, request_id), [None, None, None, None, None, None])
            if span[3 * finished] is None:
                span[3 * finished : 3 * finished + 3] = [at, seq, hashes[seq]]
    if not spans:
        return
    if conn.dialect.name == "postgresql":
        # Lists, which psycopg sends as arrays (a tuple would go as a record), one per column.
        columns = [list(column) for column in zip(*((w, r, *span) for (w, r), span in spans.items()), strict=True)]
        conn.exec_driver_sql(_PG_UPSERT_SPANS, ([log_id] * len(spans), *columns))
        return
    rows = [
        {
            "log_id": log_id,
            "workload_id": workload_id,
            "request_id": request_id,
            **dict(zip(_SPAN_FIELDS, span, strict=True)),
        }
        for (workload_id, request_id), span in spans.items()
    ]
    conn.execute(_sqlite_upsert_spans(), rows)


# A span's fields, in the order _add_spans keeps them.
_SPAN_FIELDS = ("started_at", "started_seq", "started_hash", "finished_at", "finished_seq", "finished_hash")
# PostgreSQL: one statement for a chunk's spans, each column one array (in binary: no quoting of each element).
# psycopg's executemany sent a statement per row: catching up 20,000 request events in-process (20 chunks of 1,000)
# took 46-47 us of this process's CPU per event that way, 33-35 this way.
_PG_UPSERT_SPANS = (
    f"INSERT INTO rollup_request_spans (log_id, workload_id, request_id, {', '.join(_SPAN_FIELDS)}) "
    "SELECT * FROM unnest(%b::varchar[], %b::varchar[], %b::varchar[], %b::int8[], %b::int8[], %b::bytea[], "
    "%b::int8[], %b::int8[], %b::bytea[]) "
    "ON CONFLICT (log_id, workload_id, request_id) DO UPDATE SET "
    + ", ".join(f"{name} = coalesce(rollup_request_spans.{name}, excluded.{name})" for name in _SPAN_FIELDS)
)


@functools.lru_cache(maxsize=1)
def _sqlite_upsert_spans() -> Any:
    statement = sqlite_insert(rollup_request_spans)
    table, new = rollup_request_spans.c, statement.excluded
    keep_first = {name: func.coalesce(getattr(table, name), getattr(new, name)) for name in _SPAN_FIELDS}
    return statement.on_conflict_do_update(index_elements=["log_id", "workload_id", "request_id"], set_=keep_first)


def _reused_request_ids(
    conn: Connection, log_id: str, workloads_of: dict[str, set[str]], in_chunk: dict[str, int]
) -> set[str]:
    """Workloads with a request event whose request ID an earlier entry of the log already closed: a request
    started or finished a second time. The summary forgets closed requests, so it counts the request's entries in
    the log from ix_entries_request (request_id, log_id) alone: two or more before this chunk means reused."""
    ids = sorted(workloads_of)
    reused: set[str] = set()
    for at in range(0, len(ids), _LOOKUP_CHUNK):
        for request_id, count in _REQUEST_COUNTS.rows(
            conn, {"log_id": log_id, "request_ids": ids[at : at + _LOOKUP_CHUNK]}
        ):
            if count - in_chunk.get(request_id, 0) >= 2:
                reused.update(workloads_of[request_id])
    return reused


# One text whatever the number of IDs (storage.sql.lists): on PostgreSQL one array parameter, so psycopg parses the
# statement once and PostgreSQL prepares it, where 500 expanded IDs were re-parsed at every catch-up chunk.
_REQUEST_COUNTS = DriverQuery(
    select(entries.c.request_id, func.count())
    .where(member_of(entries.c.request_id, "request_ids"), entries.c.log_id == bindparam("log_id"))
    .group_by(entries.c.request_id)
)


_SUMMARIES = DriverQuery(
    select(rollup_requests.c.workload_id, rollup_requests.c.summary).where(
        rollup_requests.c.log_id == bindparam("log_id"),
        member_of(rollup_requests.c.workload_id, "workload_ids"),
    )
)


def _load_summaries(conn: Connection, log_id: str, workloads: Sequence[str]) -> dict[str, RequestSummary]:
    found: dict[str, RequestSummary] = {}
    for at in range(0, len(workloads), _LOOKUP_CHUNK):
        params = {"log_id": log_id, "workload_ids": list(workloads[at : at + _LOOKUP_CHUNK])}
        rows = _SUMMARIES.rows(conn, params)
        found.update((workload_id, RequestSummary.decode(summary)) for workload_id, summary in rows)
    return found


def _add_serving(conn: Connection, log_id: str, workload_id: str, intervals: Sequence[Interval]) -> int:
    """Merge closed requests into the workload's hour rows; returns how much the union's measure grew."""
    by_hour: dict[int, list[Interval]] = defaultdict(list)
    for interval in intervals:
        for hour, piece in _hour_pieces(interval):
            by_hour[hour].append(piece)
    if not by_hour:
        return 0
    hours = sorted(by_hour)
    where = and_(
        rollup_serving.c.log_id == log_id,
        rollup_serving.c.workload_id == workload_id,
        rollup_serving.c.hour.in_(hours),
    )
    before = 0
    for row in conn.execute(
        select(rollup_serving.c.hour, rollup_serving.c.serving_micros, rollup_serving.c.intervals).where(where)
    ):
        by_hour[int(row.hour)].extend(_unpack(row.intervals))
        before += int(row.serving_micros)
    conn.execute(delete(rollup_serving).where(where))
    rows: list[dict[str, Any]] = []
    after = 0
    for hour in hours:
        union = merge(by_hour[hour])
        after += sum(end - start for start, end in union)
        if union:
            rows.append(
                {
                    "log_id": log_id,
                    "workload_id": workload_id,
                    "hour": hour,
                    "serving_micros": sum(end - start for start, end in union),
                    "intervals": _pack(union),
                }
            )
    if rows:
        conn.execute(rollup_serving.insert(), rows)
    return after - before


# -- reads ---------------------------------------------------------------------------------------------------


def request_spans(conn: Connection, log_id: str, reaches: dict[str, tuple[int, int]]) -> dict[str, list[StartedSpan]]:
    """Each workload's requests started in its [lo, hi]: what a dispute lookup sweeps (ledger.dispute) without
    reading an entry. One statement for every workload; workloads sharing a range share its part of it."""
    if conn.dialect.name == "postgresql" and len(reaches) >= _ARRAYS_FROM:  # one statement text for any count
        ordered = sorted(reaches.items())
        params: dict[str, Any] = {
            "log_id": log_id,
            "workloads": [workload_id for workload_id, _ in ordered],
            "los": [lo for _, (lo, _) in ordered],
            "his": [hi for _, (_, hi) in ordered],
        }
        rows = _POSTGRESQL_SPANS.rows(conn, params)
    else:
        groups: dict[tuple[int, int], list[str]] = defaultdict(list)
        for workload_id, reach in reaches.items():
            groups[reach].append(workload_id)
        params = {"log_id": log_id}
        for i, ((lo, hi), workloads) in enumerate(sorted(groups.items())):
            params.update({f"workloads_{i}": sorted(workloads), f"lo_{i}": lo, f"hi_{i}": hi})
        rows = _spans_statement(len(groups)).rows(conn, params)
    found: dict[str, list[StartedSpan]] = defaultdict(list)
    for workload_id, *span in rows:
        found[workload_id].append(tuple(span))
    return found


def window_request_spans(
    conn: Connection,
    log_id: str,
    ranges: dict[str, tuple[int, int, int]],
    limit: int,
    asked: tuple[str, str] | None = None,
) -> tuple[dict[str, tuple[int, list[StartedSpan]]], dict[int, bytes]]:
    """Per workload, of the requests it started in [lo, hi] with (lo, split, hi) its range: how many started at or
    after `split`, every one started before it, and the first `limit` after it by start (and sequence number); and
    the request `asked` = (workload, request) wherever it started. What a dispute lookup counts and lists of a busy
    window, in one statement, without reading the rest of the window: each part is an index range, the count from
    the index alone, the request asked for a primary-key lookup. Also the entry hashes of the requests read, by
    sequence number, for citing them."""
    if not ranges:
        return {}, {}
    asked_workload, asked_request = asked if asked is not None else ("", "")
    params: dict[str, Any] = {"log_id": log_id, "limit": limit, "asked_workload": asked_workload}
    params["asked_request"] = asked_request
    ordered = sorted(ranges.items())
    if conn.dialect.name == "postgresql" and len(ranges) >= _ARRAYS_FROM:  # one statement text for any count
        params["workloads"] = [workload_id for workload_id, _ in ordered]
        params.update(zip(("los", "splits", "his"), ([r[i] for _, r in ordered] for i in range(3)), strict=True))
        query = _POSTGRESQL_WINDOW
    else:
        for i, (workload_id, (lo, split, hi)) in enumerate(ordered):
            params.update({f"workload_{i}": workload_id, f"lo_{i}": lo, f"split_{i}": split, f"hi_{i}": hi})
        query = _window_statement(len(ranges))
    found: dict[str, tuple[int, list[StartedSpan]]] = {workload_id: (0, []) for workload_id in ranges}
    seen: dict[str, set[str]] = defaultdict(set)
    hashes: dict[int, bytes] = {}
    rows = query.rows(conn, params)
    for workload_id, request, at, seq, finished_at, finished_seq, started_hash, finished_hash, count in rows:
        _, spans = found[workload_id]
        if count is not None:
            found[workload_id] = (int(count), spans)
        elif request not in seen[workload_id]:  # the request asked for may also be a first one
            seen[workload_id].add(request)
            spans.append((request, at, seq, finished_at, finished_seq))
            if started_hash is not None:
                hashes[seq] = bytes(started_hash)
            if finished_hash is not None:
                hashes[finished_seq] = bytes(finished_hash)
    return found, hashes


@functools.lru_cache(maxsize=16)
def _window_statement(workloads: int) -> DriverQuery:
    spans = rollup_request_spans.c
    columns = (spans.workload_id, spans.request_id, spans.started_at, spans.started_seq, spans.finished_at,
               spans.finished_seq, spans.started_hash, spans.finished_hash)  # fmt: skip
    none = cast(null(), BigInteger)
    parts = []
    for i in range(workloads):
        workload = (spans.log_id == bindparam("log_id"), spans.workload_id == bindparam(f"workload_{i}"))
        after = (spans.started_at >= bindparam(f"split_{i}"), spans.started_at <= bindparam(f"hi_{i}"))
        before = select(*columns, none).where(
            *workload, spans.started_at >= bindparam(f"lo_{i}"), spans.started_at < bindparam(f"split_{i}")
        )
        first = (
            select(*columns, none)
            .where(*workload, *after)
            .order_by(spans.started_at, spans.started_seq)
            .limit(bindparam("limit"))
            .subquery(f"first_{i}")
        )
        counted = select(
            bindparam(f"workload_{i}", type_=String), *(cast(null(), c.type) for c in columns[1:]), func.count()
        ).where(*workload, *after)
        parts += [before, select(*first.c), counted]
    asked = select(*columns, none).where(
        spans.log_id == bindparam("log_id"),
        spans.workload_id == bindparam("asked_workload"),
        spans.request_id == bindparam("asked_request"),
    )
    return DriverQuery(union_all(*parts, asked))


# PostgreSQL, three workloads or more: the statements above with the workloads' ranges as arrays, each row of
# `unnest` one index range of rollup_request_spans (LATERAL), so the text is one whatever the count. Built per
# count, a busy window's 19-part UNION ALL was planned afresh by each connection until psycopg prepared it (after
# five runs of that count): 4.8 ms a read on six workloads, 15 ms the first times (bench/, 1M-entry log), more than
# the lookup's other reads together, and busy windows are the rare counts. Once prepared, the UNION ALL is the
# faster form (one workload 0.31 against 1.03 ms, two 0.72 against 1.15, three 1.0 against 1.3, five 1.5 against
# 2.2), so the common counts keep it. SQLite plans in microseconds and has no arrays: it keeps the UNION ALL.
_ARRAYS_FROM = 3
_SPAN_COLUMNS = "s.request_id, s.started_at, s.started_seq, s.finished_at, s.finished_seq"
_POSTGRESQL_WINDOW = DriverQuery(
    text(
        f"""
SELECT r.workload_id, {_SPAN_COLUMNS}, s.started_hash, s.finished_hash, CAST(NULL AS BIGINT)
FROM unnest(CAST(:workloads AS TEXT[]), CAST(:los AS BIGINT[]), CAST(:splits AS BIGINT[])) AS r(workload_id, lo, split)
JOIN rollup_request_spans AS s
  ON s.log_id = :log_id AND s.workload_id = r.workload_id AND s.started_at >= r.lo AND s.started_at < r.split
UNION ALL
SELECT r.workload_id, f.request_id, f.started_at, f.started_seq, f.finished_at, f.finished_seq, f.started_hash,
       f.finished_hash, CAST(NULL AS BIGINT)
FROM unnest(CAST(:workloads AS TEXT[]), CAST(:splits AS BIGINT[]), CAST(:his AS BIGINT[])) AS r(workload_id, split, hi)
CROSS JOIN LATERAL (
  SELECT {_SPAN_COLUMNS}, s.started_hash, s.finished_hash FROM rollup_request_spans AS s
  WHERE s.log_id = :log_id AND s.workload_id = r.workload_id AND s.started_at >= r.split AND s.started_at <= r.hi
  ORDER BY s.started_at, s.started_seq LIMIT :limit
) AS f
UNION ALL
SELECT r.workload_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       (SELECT count(*) FROM rollup_request_spans AS s
        WHERE s.log_id = :log_id AND s.workload_id = r.workload_id AND s.started_at >= r.split
          AND s.started_at <= r.hi)
FROM unnest(CAST(:workloads AS TEXT[]), CAST(:splits AS BIGINT[]), CAST(:his AS BIGINT[])) AS r(workload_id, split, hi)
UNION ALL
SELECT s.workload_id, {_SPAN_COLUMNS}, s.started_hash, s.finished_hash, CAST(NULL AS BIGINT)
FROM rollup_request_spans AS s
WHERE s.log_id = :log_id AND s.workload_id = :asked_workload AND s.request_id = :asked_request
"""
    )
)
_POSTGRESQL_SPANS = DriverQuery(
    text(
        f"""
SELECT r.workload_id, {_SPAN_COLUMNS}
FROM unnest(CAST(:workloads AS TEXT[]), CAST(:los AS BIGINT[]), CAST(:his AS BIGINT[])) AS r(workload_id, lo, hi)
JOIN rollup_request_spans AS s
  ON s.log_id = :log_id AND s.workload_id = r.workload_id AND s.started_at >= r.lo AND s.started_at <= r.hi
"""
    )
)


@functools.lru_cache(maxsize=16)
def _spans_statement(groups: int) -> DriverQuery:
    spans = rollup_request_spans.c
    parts = [
        select(
            spans.workload_id,
            spans.request_id,
            spans.started_at,
            spans.started_seq,
            spans.finished_at,
            spans.finished_seq,
        ).where(
            spans.log_id == bindparam("log_id"),
            member_of(spans.workload_id, f"workloads_{i}"),
            spans.started_at >= bindparam(f"lo_{i}"),
            spans.started_at <= bindparam(f"hi_{i}"),
        )
        for i in range(groups)
    ]
    return DriverQuery(parts[0] if groups == 1 else union_all(*parts))


def _hours(start: int, end: int) -> int:
    """How many hour rows [start, end) spans."""
    return 0 if end <= start else (end - 1) // HOUR - start // HOUR + 1


_HOURS = DriverQuery(
    select(rollup_serving.c.hour, rollup_serving.c.serving_micros, rollup_serving.c.intervals).where(
        rollup_serving.c.log_id == bindparam("log_id"),
        rollup_serving.c.workload_id == bindparam("workload_id"),
        rollup_serving.c.hour >= bindparam("start"),
        rollup_serving.c.hour < bindparam("end"),
    )
)


class ServingUnion:
    """The closed requests' union of one workload, measured over any span from the fewest hour rows: the span's
    own, or (for a span covering most of a days-long session) the summary's total less the hours outside it."""

    def __init__(self, read: Callable[[Any, dict[str, Any]], list[Any]], log_id: str, workload_id: str,
                 summary: RequestSummary) -> None:  # fmt: skip
        self.read = read
        self.log_id = log_id
        self.workload_id = workload_id
        self.summary = summary

    def measure(self, start: int, end: int) -> int:
        """µs of [start, end) inside the union."""
        first, last = self.summary.first_at, self.summary.last_at
        if first is None or last is None:
            return 0
        lo, hi = first, last + 1  # every closed interval lies between the first and last request event
        start, end = max(start, lo), min(end, hi)
        if end <= start:
            return 0
        if _hours(start, end) <= _hours(lo, start) + _hours(end, hi):
            return self._rows(start, end)
        return self.summary.serving_micros - self._rows(lo, start) - self._rows(end, hi)

    def _rows(self, start: int, end: int) -> int:
        """µs of [start, end) inside the union, from its hour rows: whole hours by their stored measure, the
        edges piece by piece."""
        if end <= start:
            return 0
        params = {"log_id": self.log_id, "workload_id": self.workload_id, "start": start // HOUR * HOUR, "end": end}
        total = 0
        for hour, micros, blob in self.read(_HOURS, params):
            if start <= hour and hour + HOUR <= end:
                total += int(micros)
            else:
                total += sum(max(0, min(b, end) - max(a, start)) for a, b in _unpack(blob))
        return total
