"""Hot reads run on the driver's cursor: a SQLAlchemy statement compiled once per dialect, then executed without
SQLAlchemy's per-execution work.

A dispute lookup makes a score of small reads. Through SQLAlchemy each cost 0.27-0.52 ms on PostgreSQL against
0.09 ms for the same statement on the psycopg cursor (bench/, 1M-entry log): the cache-key walk, parameter
processing and result wrapping outweigh the query. The statements stay SQLAlchemy Core (one source for both
dialects); only their execution skips it. Parameters must need no type processing (strings, integers, bytes, and
lists for storage.sql.lists.member_of), and rows come back as plain tuples in the statement's column order.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import weakref
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import ClauseElement

from ledger.tracing import statement_span

_EXPANDED = re.compile(r"__\[POSTCOMPILE_(\w+)\]")

# Engines whose SQL is traced (server/telemetry.py's trace_sql): statements run on their drivers' cursors get the
# same CLIENT spans as those SQLAlchemy runs.
_TRACED: weakref.WeakSet[Engine] = weakref.WeakSet()


def trace_statements(engine: Engine) -> None:
    """Give what storage runs on `engine`'s driver connections, past SQLAlchemy, a span per statement or pipeline."""
    _TRACED.add(engine)


def traced(engine: Engine, statement: str) -> AbstractContextManager[None]:
    """The span of SQL run on `engine`'s driver connection (ledger.tracing.statement_span), if its SQL is traced."""
    if engine in _TRACED:
        return statement_span(engine.dialect.name, statement)
    return contextlib.nullcontext()


@dataclass
class _Compiled:
    pieces: list[str]  # SQL text around each expanded list (qmark dialects); one piece otherwise
    expanded: list[str]  # the list parameters between the pieces
    positions: Sequence[str] | None  # parameter names in placeholder order (qmark), None for named placeholders
    literals: dict[str, Any]  # the values the statement itself binds (`kind != 'EVENT'`)
    by_lengths: dict[tuple[int, ...], str] = field(default_factory=dict)

    def sql(self, params: Mapping[str, Any]) -> str:
        if not self.expanded:
            return self.pieces[0]
        lengths = tuple(len(params[name]) for name in self.expanded)
        found = self.by_lengths.get(lengths)
        if found is None:
            text = [self.pieces[0]]
            for length, piece in zip(lengths, self.pieces[1:], strict=True):
                # An empty list matches nothing, as SQLAlchemy writes it.
                text.append(", ".join(["?"] * length) if length else "SELECT 1 WHERE 1 != 1")
                text.append(piece)
            found = self.by_lengths[lengths] = "".join(text)
        return found

    def arguments(self, given: Mapping[str, Any]) -> Any:
        params = {**self.literals, **given} if self.literals else given
        if self.positions is None:
            return params
        flat: list[Any] = []
        for name in self.positions:
            value = params[name]
            if name in self.expanded:
                flat.extend(value)
            else:
                flat.append(value)
        return flat


def run_sqlite(conn: Connection, sql: str, params: Any, *, many: bool = False) -> list[Any]:
    """One SQLite statement on sqlite3's own cursor, in the connection's transaction: an append group's statements,
    and every BEGIN. Through SQLAlchemy each cost about as much again as the statement (pool and event dispatch,
    result wrapping). Errors are raised as SQLAlchemy's, as conn.exec_driver_sql raises them, so storage.sql.faults
    translates them the same way; a traced engine's statement gets its span (traced)."""
    cursor: Any = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with traced(conn.engine, sql):
            if many:
                cursor.executemany(sql, params)
                return []
            cursor.execute(sql, params)
            return cursor.fetchall()  # type: ignore[no-any-return]
    except sqlite3.Error as err:
        raise DBAPIError.instance(sql, params, err, sqlite3.Error, dialect=conn.dialect) from err
    finally:
        cursor.close()


class DriverQuery:
    """One statement, compiled for each dialect it meets."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def _compile(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            split = _EXPANDED.split(compiled.string)
            positions = getattr(compiled, "positiontup", None) if dialect.paramstyle == "qmark" else None
            literals = {name: value for name, value in compiled.params.items() if value is not None}
            found = self._compiled[dialect.name] = _Compiled(split[0::2], split[1::2], positions, literals)
        return found

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        compiled = self._compile(conn.dialect)
        cursor = _cursor(conn)
        sql = compiled.sql(params)
        try:
            with traced(conn.engine, sql):
                cursor.execute(sql, compiled.arguments(params))
                return [tuple(row) for row in cursor.fetchall()]
        finally:
            cursor.close()


def _cursor(conn: Connection) -> Any:
    """A driver cursor; on PostgreSQL one that reads rows in the binary format: integers and hashes arrive as they
    are stored, with no text to parse (a busy lookup's rows hold hundreds of 32-byte hashes)."""
    driver = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        return driver.cursor(binary=True)  # type: ignore[union-attr]
    return driver.cursor()  # type: ignore[union-attr]


def rows_together(
    conn: Connection, queries: Sequence[tuple[DriverQuery, Mapping[str, Any]]]
) -> list[list[tuple[Any, ...]]]:
    """Independent statements' rows, in order. On PostgreSQL they are sent in one pipeline (one round trip, and the
    server runs each while the client reads the one before); elsewhere they run one after another."""
    if conn.dialect.name != "postgresql" or len(queries) < 2:
        return [query.rows(conn, params) for query, params in queries]
    driver = conn.connection.driver_connection
    cursors = []
    statements = [(query._compile(conn.dialect), params) for query, params in queries]
    texts = [compiled.sql(params) for compiled, params in statements]
    try:
        with traced(conn.engine, ";\n".join(texts)):
            with driver.pipeline():  # type: ignore[union-attr]
                for (compiled, params), text in zip(statements, texts, strict=True):
                    cursor = _cursor(conn)
                    cursors.append(cursor)
                    cursor.execute(text, compiled.arguments(params))
            return [[tuple(row) for row in cursor.fetchall()] for cursor in cursors]
    finally:
        for cursor in cursors:
            cursor.close()
