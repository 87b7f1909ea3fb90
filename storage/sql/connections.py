"""The SQL store's engines and connections: the writer and reader pools, and reads pinned to a session or snapshot."""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import NullPool

from storage.sql import faults
from storage.sql.driver import DriverQuery, run_sqlite
from storage.sql.sqlite_file import create_owner_only, sqlite_database_path


def _sqlite_engines(url: str) -> tuple[Engine, Engine]:
    """SQLite: WAL so readers never block the writer; FULL sync so an acknowledged append survives power loss.

    The writer engine opens every transaction with BEGIN IMMEDIATE, taking the write lock up front, so two
    appenders never both read a head and then race to extend it.
    """

    def tune(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    def tune_writer(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # Appends touch index pages all over the unique event_id and request_id indexes (IDs are random): a
        # bigger page cache keeps them in memory (bounded: 32 MiB per writer connection, and appends are
        # serialized on one), and checkpointing every 10,000 WAL pages instead of 1,000 writes a page that
        # several commits changed back into the database once. Durability is unchanged (synchronous=FULL);
        # bench/ measured the raw insert ceiling up about 50% at 100,000 entries.
        cursor.execute("PRAGMA cache_size=-32768")
        cursor.execute("PRAGMA wal_autocheckpoint=10000")
        # An append group's multi-row INSERT runs in a statement transaction (it may fail halfway on a unique
        # index), whose journal copies every page the statement changes; past 64 KiB SQLite spills it to a temp
        # file. That was one file created, written and deleted per group commit, about five of the group's
        # seventeen writes per append (strace, 16 single-event clients). In memory it is bounded by the largest
        # statement a writer runs (one insert chunk), and a rollback needs it no less.
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()

    def begin_immediate(connection: Connection) -> None:
        _begin_sqlite(connection, "BEGIN IMMEDIATE")

    def begin_deferred(connection: Connection) -> None:
        _begin_sqlite(connection, "BEGIN")

    connect_args = {"check_same_thread": False, "timeout": 30}
    # One pooled writer connection: SQLite runs one write transaction at a time anyway, so more connections only
    # wait on its lock, and each would grow its own 32 MiB page cache (tune_writer). With the default pool, the
    # appends, the rollups' catch-up and the billing closer each came to hold one, and the server's memory grew
    # with the database (bench/, peak over a 1M-entry log: 427 MiB with several writers, 212 MiB with one). A
    # writer waits for the connection as long as SQLite's busy_timeout would have let it wait for the lock.
    pool: dict[str, Any] = (
        {"poolclass": NullPool} if ":memory:" in url else {"pool_size": 1, "max_overflow": 0, "pool_timeout": 30}
    )
    writer = create_engine(url, connect_args=connect_args, **pool)
    reader = create_engine(url, connect_args=connect_args)
    for engine, begin in ((writer, begin_immediate), (reader, begin_deferred)):
        event.listen(engine, "connect", tune)
        event.listen(engine, "begin", begin)
    event.listen(writer, "connect", tune_writer)
    return writer, reader


def _begin_sqlite(connection: Connection, statement: str) -> None:
    """Open a SQLite transaction on sqlite3's own connection (run_sqlite): every append group and read session
    begins here, and through SQLAlchemy's execution the BEGIN cost several times the statement."""
    run_sqlite(connection, statement, ())


# A pooled connection back in the pool for less than this was working a moment ago: checking it out again skips the
# ping. HikariCP's alive-bypass window is the same idea (500 ms).
_PING_AFTER_IDLE_SECONDS = 0.5


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled PostgreSQL connection at checkout only when it sat idle past _PING_AFTER_IDLE_SECONDS.

    A connection the database dropped (a restart, a failover, an idle timeout) is found by the ping and replaced
    before anyone reads on it. SQLAlchemy's pool_pre_ping pings at every checkout: one round trip per dispute
    lookup, and a lookup answered right after another on the same connection does not need it. A ping that fails
    raises DisconnectionError, on which the pool discards the connection and checks out another (SQLAlchemy's
    documented custom pessimistic disconnect handling).
    """

    def idle_from_now(_dbapi_connection: Any, record: Any) -> None:  # a new connection, or one back in the pool
        record.info["idle_since"] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since < _PING_AFTER_IDLE_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as err:  # any failure to ping means the connection is no good
            raise DisconnectionError(f"the pooled connection failed its ping: {err}") from err
        if not alive:
            raise DisconnectionError("the pooled connection failed its ping")

    event.listen(engine, "connect", idle_from_now)
    event.listen(engine, "checkin", idle_from_now)
    event.listen(engine, "checkout", checked_out)


class SqlConnections:
    """A database's engines (one writer connection on SQLite) and where each read runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        if self.dialect == "sqlite":
            database_file = sqlite_database_path(url)
            if database_file is not None:
                create_owner_only(database_file)  # before SQLite creates it with the process's umask
            self.writer, self.reader = _sqlite_engines(url)
        else:
            self.writer = create_engine(url, pool_size=8, max_overflow=8)
            _ping_when_idle(self.writer)
            self.reader = self.writer
        self.marker = "?" if self.writer.dialect.paramstyle == "qmark" else "%s"  # the driver's parameter style
        # The connection of the session() or snapshot() this thread is inside, if any: every read runs on it.
        self._pinned: contextvars.ContextVar[Connection | None] = contextvars.ContextVar("pinned", default=None)
        self._snapshot: contextvars.ContextVar[bool] = contextvars.ContextVar("snapshot", default=False)

    def close(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()

    def ping(self) -> None:
        """One trivial read on a pooled connection; raises StorageError when the database cannot be reached.

        On PostgreSQL a pooled connection the database dropped fails its checkout ping and is replaced by a new one
        (_ping_when_idle), so this fails only when no new connection can be made either."""
        try:
            with self.reader.connect() as conn:
                conn.execute(sa.text("SELECT 1")).scalar_one()
        except Exception as err:  # the same table as every other read and write (storage.sql.faults)
            fault = faults.storage_fault(err)
            if fault is None:
                raise
            raise fault from err

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection to read on: the pinned one inside session() or snapshot(); else one from the pool."""
        pinned = self._pinned.get()
        if pinned is not None:
            yield pinned
            return
        with self.reader.connect() as conn:
            yield conn

    def in_snapshot(self) -> bool:
        return self._snapshot.get()

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Run every read inside on one pooled connection, each seeing what is committed when it runs.

        A dispute lookup makes a score of small reads: from one pooled connection each, checking out (and, on
        PostgreSQL, pinging) a connection and resetting it cost more than most of the reads. A snapshot() inside
        a session continues on its connection.
        """
        if self._pinned.get() is not None:
            yield
            return
        with self.reader.connect() as conn:
            if self.dialect == "postgresql":
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # no transaction held between reads
            token = self._pinned.set(conn)
            try:
                yield
            finally:
                self._pinned.reset(token)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Run every read inside in one read transaction on one connection, so they all see the same state.

        The answer must be consistent: an append landing between two of a lookup's reads must not show up in one
        and not the other. SQLite's deferred transaction (WAL) fixes its view at the first read; PostgreSQL's
        REPEATABLE READ at the first statement. Nested snapshots share the outer one.
        """
        if self._snapshot.get():
            yield
            return
        in_session = self._pinned.get() is not None
        with self.session():
            conn = self._pinned.get()
            assert conn is not None
            if conn.in_transaction():  # SQLAlchemy began one for a read of the session: the snapshot starts now
                conn.rollback()
            if self.dialect == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            pinned, snapshot = self._pinned.set(conn), self._snapshot.set(True)
            try:
                with conn.begin():
                    yield
            finally:
                self._snapshot.reset(snapshot)
                self._pinned.reset(pinned)
                if in_session and self.dialect == "postgresql":
                    # The session goes on (SQLAlchemy set the isolation level on its connection, in place): its
                    # reads after the snapshot must again hold no transaction between them.
                    conn.execution_options(isolation_level="AUTOCOMMIT")

    def _read(self, query: DriverQuery, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        pinned = self._pinned.get()
        if pinned is not None:
            return query.rows(pinned, params)
        with self.reader.connect() as conn:
            if self.dialect == "postgresql":
                # One statement needs no transaction around it: in autocommit it is one round trip, not a BEGIN,
                # the statement and the pool's ROLLBACK.
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            return query.rows(conn, params)
