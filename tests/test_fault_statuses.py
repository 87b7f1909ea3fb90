"""Issue #23 item 3: storage faults are UNAVAILABLE and retryable, bad numbers and unknown fields INVALID_ARGUMENT,
and every status is bounded; nothing reaches a client as UNKNOWN or with SQL text."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from usageledger.v1 import audit_pb2 as apb
from usageledger.v1 import audit_pb2_grpc as apb_grpc
from usageledger.v1 import ledger_pb2 as pb
from usageledger.v1 import ledger_pb2_grpc as pb_grpc

from client.ledger_client import LedgerClient
from server.app import RunningServer, start_server
from storage.sql.faults import StorageFault, storage_fault
from tests.conftest import PG_ADMIN_URL, EventFactory, FixedClock
from wire.status import MAX_MESSAGE_CHARS

KILL_BACKENDS = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
SQL_WORDS = ("SELECT", "INSERT", "UPDATE", "FROM", "WHERE", "[SQL", "parameters")


def status_details(err: grpc.RpcError) -> tuple[dict[str, str], list[tuple[str, str]], str]:
    """(ErrorInfo reason and metadata, field violations, message) of a failed call."""
    status = rpc_status.from_call(err)
    assert status is not None, (err.code(), err.details())
    info: dict[str, str] = {}
    violations: list[tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            found = error_details_pb2.ErrorInfo()
            detail.Unpack(found)
            info = {"reason": found.reason, **found.metadata}
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [(v.field, v.description) for v in bad.field_violations]
    return info, violations, status.message


@pytest.fixture
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as opened:
        yield opened


def _raw(channel: grpc.Channel, method: str) -> grpc.UnaryUnaryMultiCallable:
    return channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)


def _varint_field(number: int, value: int) -> bytes:
    out, key = bytearray(), (number << 3) | 0
    for part in (key, value):
        while True:
            byte, part = part & 0x7F, part >> 7
            out.append(byte | (0x80 if part else 0))
            if not part:
                break
    return bytes(out)


# -- unknown fields and out-of-range numbers --------------------------------------------------------------------


def test_an_unknown_field_of_append_events_request_is_refused_by_number(
    server: RunningServer, channel: grpc.Channel, make_event: EventFactory
) -> None:
    from wire.convert import raw_to_event

    request = pb.AppendEventsRequest(events=[raw_to_event(make_event())]).SerializeToString()
    with pytest.raises(grpc.RpcError) as raised:
        _raw(channel, "/usageledger.v1.LedgerService/AppendEvents")(request + _varint_field(7, 1), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, violations, _ = status_details(raised.value)
    assert info["reason"] == "UNKNOWN_FIELD"  # docs/errors.md
    assert [field for field, _ in violations] == ["field 7"]
    assert [h.log_id for h in server.ledger.store.list_logs("", 10)] == ["system"]  # nothing appended


def test_an_unknown_field_inside_an_event_is_named_with_its_path(
    channel: grpc.Channel, make_event: EventFactory
) -> None:
    from wire.convert import raw_to_event

    events = [raw_to_event(make_event()).SerializeToString() for _ in range(2)]
    events[1] += _varint_field(99, 5)
    request = b"".join(bytes([0x0A, len(e)]) + e for e in events)
    with pytest.raises(grpc.RpcError) as raised:
        _raw(channel, "/usageledger.v1.LedgerService/AppendEvents")(request, timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in status_details(raised.value)[1]] == ["events[1].field 99"]


def test_an_unknown_field_of_a_read_request_is_refused(channel: grpc.Channel) -> None:
    request = pb.GetLogHeadRequest(log_id="system").SerializeToString() + _varint_field(15, 3)
    with pytest.raises(grpc.RpcError) as raised:
        _raw(channel, "/usageledger.v1.LedgerService/GetLogHead")(request, timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in status_details(raised.value)[1]] == ["field 15"]


@pytest.mark.parametrize("start_index", [2**63, 2**63 + 1, 2**64 - 1])
def test_list_leaves_beyond_the_signed_64_bit_range_is_invalid_argument(
    channel: grpc.Channel, client: LedgerClient, make_event: EventFactory, start_index: int
) -> None:
    client.append_events([make_event()])
    audit = apb_grpc.AuditServiceStub(channel)
    with pytest.raises(grpc.RpcError) as raised:
        audit.ListLeaves(apb.ListLeavesRequest(log_id="org/acme", start_index=start_index), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, violations, message = status_details(raised.value)
    assert info["reason"] == "NUMBER_OUT_OF_RANGE"  # docs/errors.md
    assert violations == [("start_index", "must be at most 9223372036854775807 (2^63 - 1)")]
    assert not any(word in message for word in SQL_WORDS)
    # The largest index the store can hold is a valid question with an empty answer.
    response = audit.ListLeaves(apb.ListLeavesRequest(log_id="org/acme", start_index=2**63 - 1), timeout=10)
    assert list(response.leaves) == []


def test_every_uint64_request_field_is_range_checked(channel: grpc.Channel) -> None:
    ledger = pb_grpc.LedgerServiceStub(channel)
    audit = apb_grpc.AuditServiceStub(channel)
    calls = [
        (lambda: ledger.GetEntry(pb.GetEntryRequest(log_id="system", sequence=2**64 - 1), timeout=10), "sequence"),
        (
            lambda: ledger.ListEntries(pb.ListEntriesRequest(log_id="system", start_sequence=2**63), timeout=10),
            "start_sequence",
        ),
        (lambda: audit.GetCheckpoint(apb.GetCheckpointRequest(log_id="system", size=2**63), timeout=10), "size"),
        (
            lambda: audit.GetConsistencyProof(
                apb.GetConsistencyProofRequest(log_id="system", old_size=1, new_size=2**64 - 1), timeout=10
            ),
            "new_size",
        ),
    ]
    for call, field in calls:
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, raised.value.details())
        assert [f for f, _ in status_details(raised.value)[1]] == [field]


def test_a_list_leaves_page_token_beyond_the_range_is_invalid_argument(channel: grpc.Channel) -> None:
    import base64

    audit = apb_grpc.AuditServiceStub(channel)
    for token in (str(2**63), "²"):
        page_token = base64.urlsafe_b64encode(token.encode()).decode()
        with pytest.raises(grpc.RpcError) as raised:
            audit.ListLeaves(apb.ListLeavesRequest(log_id="system", page_token=page_token), timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [f for f, _ in status_details(raised.value)[1]] == ["page_token"]


# -- bounded statuses ---------------------------------------------------------------------------------------------


def test_a_one_megabyte_log_id_is_not_echoed(channel: grpc.Channel) -> None:
    ledger = pb_grpc.LedgerServiceStub(channel)
    huge = "org/" + "a" * (1 << 20)
    for call in (
        lambda: ledger.GetLogHead(pb.GetLogHeadRequest(log_id=huge), timeout=10),
        lambda: ledger.GetEntry(pb.GetEntryRequest(log_id=huge, sequence=0), timeout=10),
        lambda: apb_grpc.AuditServiceStub(channel).ListLeaves(apb.ListLeavesRequest(log_id=huge), timeout=10),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            call()
        # Not RESOURCE_EXHAUSTED (the client's metadata limit): the answer about the log itself, bounded.
        assert raised.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
        info, violations, message = status_details(raised.value)
        assert len(message) <= MAX_MESSAGE_CHARS and "more characters" in message
        assert all(len(v) <= 200 for v in info.values())
        assert all(len(field) + len(description) <= 500 for field, description in violations)


# -- storage faults -----------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_pooled_connections_killed_by_pg_terminate_backend_are_unavailable_then_recover(
    pg_url: str, make_event: EventFactory
) -> None:
    running = start_server(pg_url, clock=FixedClock())
    database = pg_url.rsplit("/", 1)[1]
    target = f"127.0.0.1:{running.port}"
    try:
        codes = []
        with LedgerClient(target, retries=0) as client, psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            for _ in range(3):
                client.append_events([make_event() for _ in range(20)])  # fill the pool with live connections
            for _ in range(5):
                admin.execute(KILL_BACKENDS, (database,))
                for call in (lambda: client.append_events([make_event()]), lambda: client.head("org/acme")):
                    try:
                        call()
                        codes.append(grpc.StatusCode.OK)
                    except grpc.RpcError as err:
                        codes.append(err.code())
                        assert err.code() == grpc.StatusCode.UNAVAILABLE, (err.code(), err.details())
                        info, _, message = status_details(err)
                        assert info == {"reason": "STORAGE_UNAVAILABLE", "fault": "CONNECTION_LOST"}
                        assert "connection was lost" in message and "retry" in message
                        assert not any(word in message for word in SQL_WORDS), message
        assert grpc.StatusCode.UNAVAILABLE in codes  # the kill was seen at least once, and answered as retryable
        # The client library's retry finds a fresh connection: the server reconnected by itself.
        with LedgerClient(target) as client:
            [result] = client.append_events([make_event()])
            assert not result.duplicate
    finally:
        running.stop(grace=None)


def test_a_locked_sqlite_file_is_a_retryable_storage_fault(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with pytest.raises(OperationalError) as raised, engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        fault = storage_fault(raised.value)
        assert isinstance(fault, StorageFault) and fault.fault == "DATABASE_BUSY"
        assert "INSERT" not in str(fault) and "retry" in str(fault)
        with pytest.raises(sqlite3.OperationalError) as raw:
            sqlite3.connect(path, timeout=0).execute("INSERT INTO t VALUES (1)")
        assert storage_fault(raw.value) is not None  # a driver cursor's error, not wrapped by SQLAlchemy
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()


def test_an_unreadable_sqlite_file_is_an_io_fault_and_other_errors_are_not_storage_faults(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "ledger.db"  # its directory does not exist
    with pytest.raises(sqlite3.OperationalError) as raised:
        sqlite3.connect(path)
    fault = storage_fault(raised.value)
    assert fault is not None and fault.fault == "IO_ERROR"
    assert storage_fault(ValueError("not a storage fault")) is None
    assert storage_fault(sqlite3.IntegrityError("UNIQUE constraint failed")) is None


@pytest.mark.postgres
def test_a_killed_connection_under_the_key_lookup_of_an_authenticated_call_is_unavailable(pg_url: str) -> None:
    from client.ledger_client import Connection
    from ledger.api_keys import Role, issue_key
    from storage.sql import open_store
    from storage.sql.keystore import SqlKeyStore

    store = open_store(pg_url)
    issued = issue_key(Role.AUDITOR, None, 0)
    SqlKeyStore(store.writer).add(issued.record)
    store.close()
    running = start_server(pg_url, clock=FixedClock(), require_auth=True, key_cache_seconds=0)
    database = pg_url.rsplit("/", 1)[1]
    try:
        codes = []
        connection = Connection(api_key=issued.token)
        with (
            LedgerClient(f"127.0.0.1:{running.port}", retries=0, connection=connection) as client,
            psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin,
        ):
            client.head("system")
            for _ in range(5):
                admin.execute(KILL_BACKENDS, (database,))
                try:
                    client.head("system")  # the key is read first: the dead connection is met there
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as err:
                    codes.append(err.code())
                    assert err.code() == grpc.StatusCode.UNAVAILABLE, (err.code(), err.details())
                    info, _, message = status_details(err)
                    assert info["fault"] == "CONNECTION_LOST" and not any(w in message for w in SQL_WORDS)
        assert grpc.StatusCode.UNAVAILABLE in codes
    finally:
        running.stop(grace=None)


def test_an_unexpected_error_is_internal_with_an_incident_id_and_no_error_text() -> None:
    """Behind the same request guard as every service: a handler's stray exception is never UNKNOWN with its text."""
    from concurrent import futures

    from server.guard import RequestGuard

    def fails(_request: bytes, _context: grpc.ServicerContext) -> bytes:
        raise ValueError("SELECT secret FROM somewhere WHERE token = 'abc'")

    def streams(_request: bytes, _context: grpc.ServicerContext) -> Iterator[bytes]:
        yield b""
        raise sqlite3.OperationalError("database or disk is full")

    handler = grpc.method_handlers_generic_handler(
        "test.Faults",
        {
            "Fails": grpc.unary_unary_rpc_method_handler(fails),
            "Streams": grpc.unary_stream_rpc_method_handler(streams),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[RequestGuard()])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.RpcError) as raised:
                channel.unary_unary("/test.Faults/Fails")(b"", timeout=10)
            assert raised.value.code() == grpc.StatusCode.INTERNAL
            info, _, message = status_details(raised.value)
            assert info["reason"] == "INTERNAL_ERROR" and len(info["incident"]) == 12
            assert info["incident"] in message and "secret" not in message and "SELECT" not in message
            with pytest.raises(grpc.RpcError) as raised:
                list(channel.unary_stream("/test.Faults/Streams")(b"", timeout=10))
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE  # a storage fault mid-stream
            assert status_details(raised.value)[0]["fault"] == "DISK_FULL"
    finally:
        server.stop(None)
