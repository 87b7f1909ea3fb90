"""Hostile input against a real server: every malformed event is a clean INVALID_ARGUMENT naming the field, nothing
is appended, and the ledger still verifies. Also the limits: batch size, message size, expired deadlines."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from usageledger.v1 import ledger_pb2 as pb

from ledger.events import IDENTIFIER_RE
from ledger.intake import MAX_BATCH_EVENTS
from ledger.log.audit import verify
from ledger.pricebook import default_price_book
from ledger.timeutil import parse_rfc3339_micros
from server.app import MAX_MESSAGE_BYTES, RunningServer, start_server
from server.guard import RequestGuard
from tests.conftest import TEST_NOW, FixedClock
from wire.convert import raw_to_event

APPEND = "/usageledger.v1.LedgerService/AppendEvents"
STREAM = "/usageledger.v1.LedgerService/StreamEvents"

VALID = {
    "event_id": "ev-1",
    "org_id": "acme",
    "endpoint_id": "ep-1",
    "workload_id": "wl-1",
    "workload_kind": "SERVING",
    "instance_type": "A100",
    "type": "WORKLOAD_UP",
    "occurred_at": "2026-10-05T09:00:00Z",
}
STRING_FIELDS = [f.name for f in pb.UsageEvent.DESCRIPTOR.fields if f.type == f.TYPE_STRING]
ENUM_FIELDS = [f.name for f in pb.UsageEvent.DESCRIPTOR.fields if f.type == f.TYPE_ENUM]
INJECTIONS = [
    "'; DROP TABLE entries; --",
    "acme' OR '1'='1",
    "$(rm -rf /)",
    "`reboot`",
    "acme; cat /etc/passwd",
    "%s%s%s%n%x",
    "{0.__class__.__mro__}",
    "{{7*7}}",
    "\x00",
    "acme\x00",
    "acme\n",
    "acme\r\nSet-Cookie: x=1",
    "<script>alert(1)</script>",
    "\u202eacme",
    "ａｃｍｅ",
    " acme",
    "acme ",
    "a" * 129,
    "A100\n",
    "x" * 100_000,
]
KNOWN_INSTANCE_TYPES = set(default_price_book().rates)
EARLIEST = parse_rfc3339_micros("2000-01-01T00:00:00Z")


def _hostile_text() -> st.SearchStrategy[str]:
    """Strings no string field of a usage event accepts (identifiers, instance types, decimals alike)."""
    return st.one_of(
        st.sampled_from(INJECTIONS),
        st.text(min_size=1, max_size=300).filter(
            lambda s: not IDENTIFIER_RE.fullmatch(s) and s not in KNOWN_INSTANCE_TYPES and not _is_decimal(s)
        ),
    )


def _is_decimal(text: str) -> bool:
    from decimal import Decimal, InvalidOperation

    try:
        return Decimal(text).is_finite()
    except (InvalidOperation, ValueError):
        return False


def _valid_time(seconds: int, nanos: int) -> bool:
    micros = seconds * 1_000_000 + nanos // 1000
    in_range = 0 <= nanos < 1_000_000_000 and nanos % 1000 == 0
    return in_range and EARLIEST <= micros <= TEST_NOW + 300_000_000


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    key = _varint(number << 3 | wire_type)
    if wire_type == 2:
        return key + _varint(len(payload)) + payload
    return key + payload


def _request_bytes(event_bytes: bytes) -> bytes:
    """An AppendEventsRequest holding one event, built by hand (field 1, length-delimited)."""
    return _field(1, 2, event_bytes)


def _valid_event() -> pb.UsageEvent:
    return raw_to_event(dict(VALID))


# Each case is (what to send, the field path the answer must name or None when any field of events[0] will do).
Case = tuple[bytes, str | None]


@st.composite
def hostile_string(draw: st.DrawFn) -> Case:
    name = draw(st.sampled_from(STRING_FIELDS))
    event = _valid_event()
    setattr(event, name, draw(_hostile_text()))
    return _request_bytes(event.SerializeToString()), f"events[0].{name}"


@st.composite
def invalid_utf8(draw: st.DrawFn) -> Case:
    """Raw bytes in a string field: what a client in another language, or an attacker, can send."""
    name = draw(st.sampled_from(STRING_FIELDS))
    number = pb.UsageEvent.DESCRIPTOR.fields_by_name[name].number
    prefix = draw(st.binary(max_size=20))
    bad = prefix + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]))
    event = _valid_event()
    event.ClearField(name)
    return _request_bytes(event.SerializeToString() + _field(number, 2, bad)), f"events[0].{name}"


@st.composite
def wrong_wire_type(draw: st.DrawFn) -> Case:
    """A known field sent with another wire type, or a field number the message does not have."""
    known = {f.number: f for f in pb.UsageEvent.DESCRIPTOR.fields}
    number = draw(st.one_of(st.sampled_from(sorted(known)), st.integers(18, (1 << 29) - 1)))
    expected = 0
    if number in known:
        field = known[number]
        expected = 2 if field.type in (field.TYPE_STRING, field.TYPE_MESSAGE, field.TYPE_BYTES) else 0
    wire_type = draw(st.sampled_from([w for w in (0, 1, 2, 5) if w != expected or number not in known]))
    payload = {0: _varint(draw(st.integers(0, 2**64 - 1))), 1: bytes(8), 5: bytes(4)}.get(wire_type)
    if payload is None:
        payload = draw(st.binary(max_size=40))
    return _request_bytes(_valid_event().SerializeToString() + _field(number, wire_type, payload)), None


@st.composite
def absurd_time(draw: st.DrawFn) -> Case:
    seconds = draw(st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([-1, 0, 253402300799, 253402300800])))
    nanos = draw(st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([-1, 999_999_999, 1_000_000_000])))
    if _valid_time(seconds, nanos):
        seconds = -seconds - 1  # before 1970: never valid
    event = _valid_event()
    event.occur_time.seconds, event.occur_time.nanos = seconds, nanos
    return _request_bytes(event.SerializeToString()), "events[0].occur_time"


@st.composite
def bad_enum(draw: st.DrawFn) -> Case:
    name = draw(st.sampled_from(ENUM_FIELDS))
    defined = set(pb.UsageEvent.DESCRIPTOR.fields_by_name[name].enum_type.values_by_number)
    value = draw(st.integers(-(2**31), 2**31 - 1).filter(lambda v: v not in defined))
    event = _valid_event()
    setattr(event, name, value)
    return _request_bytes(event.SerializeToString()), f"events[0].{name}"


@st.composite
def bad_numbers(draw: st.DrawFn) -> Case:
    """Storage samples with hostile gigabytes and intervals (huge, negative, not numbers)."""
    event = raw_to_event({**VALID, "type": "STORAGE_SAMPLE", "storage_kind": "CONTAINER_DISK", "gigabytes": "1"})
    if draw(st.booleans()):
        event.gigabytes = draw(
            st.one_of(
                st.sampled_from(["-1", "-0.000000001", "NaN", "sNaN", "Infinity", "-Infinity", "1e999999999999"]),
                st.sampled_from(["1E+1000000000000000000", "0x10", "1,5", "1.5.1", "9" * 5000]),
                st.integers(min_value=10**9 + 1).map(str),
                st.integers(max_value=-1).map(str),
                st.decimals(allow_nan=False, allow_infinity=False, places=12)
                .filter(lambda d: d < 0 or d > 10**9 or d.as_tuple().exponent < -9)  # type: ignore[operator]
                .map(str),
            )
        )
        return _request_bytes(event.SerializeToString()), "events[0].gigabytes"
    event.interval_seconds = draw(
        st.one_of(st.integers(-(2**63), 0).filter(bool), st.integers(31 * 86400 + 1, 2**63 - 1))
    )
    return _request_bytes(event.SerializeToString()), "events[0].interval_seconds"


@st.composite
def truncated(draw: st.DrawFn) -> Case:
    whole = _request_bytes(_valid_event().SerializeToString())
    return whole[: draw(st.integers(1, len(whole) - 1))], None


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'ledger.db'}", clock=FixedClock())
    yield running
    running.stop(grace=None)


@pytest.fixture(scope="module")
def send_raw(fuzz_server: RunningServer) -> Iterator[Callable[[bytes], Any]]:
    with grpc.insecure_channel(f"127.0.0.1:{fuzz_server.port}") as channel:
        yield channel.unary_unary(APPEND, request_serializer=lambda b: b, response_deserializer=lambda b: b)


def field_violations(err: grpc.RpcError) -> tuple[list[str], list[str]]:
    status = rpc_status.from_call(err)
    assert status is not None, "no google.rpc.Status details"
    reasons, fields = [], []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reasons.append(info.reason)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return reasons, fields


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.one_of(
        hostile_string(), invalid_utf8(), wrong_wire_type(), absurd_time(), bad_enum(), bad_numbers(), truncated()
    )
)
def test_malformed_events_are_invalid_argument_naming_the_field(case: Case, send_raw: Callable[[bytes], Any]) -> None:
    data, field = case
    with pytest.raises(grpc.RpcError) as raised:
        send_raw(data, timeout=10)
    err = raised.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    reasons, fields = field_violations(err)
    # One ErrorInfo naming the kind of bad input (docs/errors.md), and the fields.
    bad_input = {"UNKNOWN_FIELD", "NUMBER_OUT_OF_RANGE", "MALFORMED_REQUEST", "EVENT_ID_REPEATED_IN_BATCH"}
    assert len(reasons) == 1 and (reasons[0].startswith("INVALID_") or reasons[0] in bad_input), reasons
    assert fields, err.details()
    if field is not None:
        assert field in fields, (field, fields)
    else:
        assert all(f.startswith("events[0].") or f == "<request>" for f in fields), fields


def test_after_the_fuzzing_nothing_was_appended_and_the_ledger_verifies(fuzz_server: RunningServer) -> None:
    # Runs after the fuzz test above (pytest keeps file order): the module's server saw every hostile request.
    assert [h.log_id for h in fuzz_server.ledger.store.list_logs("", 10)] == ["system"]
    assert verify(fuzz_server.ledger.store).ok


def test_an_undecodable_batch_in_a_stream_is_invalid_argument(fuzz_server: RunningServer) -> None:
    bad = _request_bytes(_valid_event().SerializeToString() + _field(2, 2, b"\xffacme"))
    with grpc.insecure_channel(f"127.0.0.1:{fuzz_server.port}") as channel:
        stream = channel.stream_unary(STREAM, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as raised:
            stream(iter([bad]), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(raised.value)[1] == ["messages[0].events[0].org_id"]


def test_a_batch_over_the_limit_is_refused_whole(tmp_path: Path) -> None:
    running = start_server(f"sqlite:///{tmp_path / 'ledger.db'}", clock=FixedClock())
    try:
        events = [raw_to_event({**VALID, "event_id": f"ev-{i}"}) for i in range(MAX_BATCH_EVENTS + 1)]
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            append = channel.unary_unary(APPEND, request_serializer=pb.AppendEventsRequest.SerializeToString)
            with pytest.raises(grpc.RpcError) as raised:
                append(pb.AppendEventsRequest(events=events), timeout=30)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert field_violations(raised.value)[1] == ["events"]
            oversized = _request_bytes(_field(1, 2, b"e" * (MAX_MESSAGE_BYTES + 1)))
            raw = channel.unary_unary(APPEND, request_serializer=lambda b: b)
            with pytest.raises(grpc.RpcError) as raised:
                raw(oversized, timeout=30)
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert [h.log_id for h in running.ledger.store.list_logs("", 10)] == ["system"]
    finally:
        running.stop(grace=None)


def test_a_call_whose_deadline_passed_while_queued_is_not_executed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hold every worker thread, queue an append whose deadline then passes, free the workers: it never runs."""
    from server import app

    started, release = threading.Semaphore(0), threading.Event()

    def hold(_request: bytes, _context: grpc.ServicerContext) -> bytes:
        started.release()
        release.wait(20)
        return b""

    def register_holder(_ledger: Any, server: grpc.Server) -> str:
        handler = grpc.unary_unary_rpc_method_handler(hold)
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Holder", {"Hold": handler})])
        return "test.Holder"

    monkeypatch.setattr(app, "SERVICES", [*app.SERVICES, register_holder])
    running = start_server(f"sqlite:///{tmp_path / 'ledger.db'}", clock=FixedClock(), workers=1, max_inflight=None)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            holder = channel.unary_unary("/test.Holder/Hold")
            holds = [holder.future(b"", timeout=30) for _ in range(4)]  # the server runs 4 worker threads
            for _ in holds:
                assert started.acquire(timeout=10)
            append = channel.unary_unary(APPEND, request_serializer=pb.AppendEventsRequest.SerializeToString)
            late = append.future(pb.AppendEventsRequest(events=[_valid_event()]), timeout=0.3)
            with pytest.raises(grpc.RpcError) as raised:
                late.result()
            assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            release.set()
            for hold_call in holds:
                hold_call.result()
        assert [h.log_id for h in running.ledger.store.list_logs("", 10)] == ["system"]
    finally:
        release.set()
        running.stop(grace=None)


def test_the_guard_refuses_an_expired_call_before_running_it() -> None:
    ran = []

    class Expired:
        def time_remaining(self) -> float:
            return 0.0

        def abort(self, code: grpc.StatusCode, details: str) -> None:
            raise RuntimeError(code, details)

    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: ran.append(request))
    guarded = RequestGuard().intercept_service(lambda _details: handler, None)
    with pytest.raises(RuntimeError) as raised:
        guarded.unary_unary(pb.AppendEventsRequest(), Expired())
    assert raised.value.args[0] == grpc.StatusCode.DEADLINE_EXCEEDED and not ran
