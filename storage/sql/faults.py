"""The one table from the database drivers' failures to the ledger's retryable StorageError (issue #23, item 3).

A lost or killed connection (`pg_terminate_backend`, a restarted server, a network cut), a busy or locked SQLite
file, a full disk or an I/O error says nothing about the request: the same call may succeed a moment later. Each
becomes a StorageError (UNAVAILABLE at the gRPC edge) with a fixed, bounded message naming the kind of fault and
never the driver's text, which can hold SQL and parameter values. The driver's error stays chained as `__cause__`
for the server's log.
"""

from __future__ import annotations

import errno
import sqlite3
import sys
from collections.abc import Mapping

from sqlalchemy import exc as sa_exc

from ledger.errors import StorageError

# reason metadata -> what the caller is told; every message ends with what to do.
_RETRY = "nothing in this call can be relied on as done: retry it (appends with the same event IDs, R24)"
FAULTS = {
    "CONNECTION_LOST": "the database connection was lost",
    "DATABASE_BUSY": "the database was busy or locked",
    "DISK_FULL": "the database's disk is full",
    "IO_ERROR": "the database could not read or write its files",
    "NO_CONNECTION": "no database connection became free in time",
    "DATABASE_UNAVAILABLE": "the database is unavailable",
}


class StorageFault(StorageError):
    """A StorageError from a driver failure; `fault` is one of FAULTS' keys (ErrorInfo metadata at the edge)."""

    def __init__(self, fault: str) -> None:
        self.fault = fault
        super().__init__(f"{FAULTS[fault]}; {_RETRY}")

    @property
    def metadata(self) -> Mapping[str, str]:
        return {"fault": self.fault, **super().metadata}


def _sqlite_fault(err: sqlite3.Error) -> str | None:
    if not isinstance(err, sqlite3.OperationalError):
        return None  # IntegrityError, a malformed image, ...: not something a retry fixes
    text = str(err).lower()
    if "locked" in text or "busy" in text:
        return "DATABASE_BUSY"
    if "full" in text:
        return "DISK_FULL"
    if "i/o" in text or "unable to open" in text or "readonly" in text:
        return "IO_ERROR"
    return "DATABASE_UNAVAILABLE"


def _driver_fault(err: BaseException) -> str | None:
    if isinstance(err, sqlite3.Error):
        return _sqlite_fault(err)
    # psycopg only when something loaded it: no psycopg error can exist otherwise, and importing it costs a SQLite
    # server 10 MiB of resident memory for nothing.
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(err, psycopg.OperationalError | psycopg.InterfaceError):
        # AdminShutdown (pg_terminate_backend, a fast shutdown), a closed connection, a server that went away;
        # also serialization failures and deadlocks, which PostgreSQL asks clients to retry.
        if isinstance(err, psycopg.errors.DiskFull):
            return "DISK_FULL"
        if isinstance(err, psycopg.errors.TransactionRollback):
            return "DATABASE_BUSY"
        return "CONNECTION_LOST"
    if isinstance(err, OSError):
        if err.errno == errno.ENOSPC:
            return "DISK_FULL"
        if err.errno == errno.EIO:
            return "IO_ERROR"
    return None


def storage_fault(err: BaseException) -> StorageFault | None:
    """The StorageFault for a driver or pool failure (raw or wrapped by SQLAlchemy), or None for anything else."""
    if isinstance(err, StorageFault):
        return err
    fault: str | None
    if isinstance(err, sa_exc.TimeoutError):  # the pool's wait for a connection
        fault = "NO_CONNECTION"
    elif isinstance(err, sa_exc.DBAPIError):
        fault = _driver_fault(err.orig) if err.orig is not None else None
        if fault is None and err.connection_invalidated:
            fault = "CONNECTION_LOST"
        if fault is None and isinstance(err, sa_exc.OperationalError):
            fault = "DATABASE_UNAVAILABLE"
    else:
        fault = _driver_fault(err)
    return StorageFault(fault) if fault is not None else None


def translated(err: BaseException) -> BaseException:
    """`err` as the store raises it: a StorageFault caused by it when it is a storage fault, else `err` itself."""
    fault = storage_fault(err)
    if fault is None or fault is err:
        return err
    fault.__cause__ = err
    return fault
