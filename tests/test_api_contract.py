"""The API says what it means (issue #25 item 5): reflection v1 and v1alpha serve the protos' comments, the
google/rpc protos needed to read error details ship beside ours, and every error reason is documented."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from client.ledger_client import LedgerClient
from server.app import RunningServer, start_server
from server.reflection import V1_SERVICE, V1ALPHA_SERVICE
from tests.conftest import EventFactory, FixedClock

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(f"sqlite:///{tmp_path_factory.mktemp('api') / 'ledger.db'}", clock=FixedClock())
    yield running
    running.stop(grace=None)


def reflect(channel: grpc.Channel, service: str, request: reflection_pb2.ServerReflectionRequest) -> object:
    # v1 and v1alpha have the same messages on the wire: one stub shape serves both.
    call = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    [answer] = list(call(iter([request])))
    return answer


def comments_of(files: list[bytes], name: str) -> dict[str, str]:
    """The leading comments of file `name`, keyed by source path (as grpcurl shows them)."""
    for data in files:
        proto = descriptor_pb2.FileDescriptorProto.FromString(data)
        if proto.name == name:
            return {
                ".".join(map(str, loc.path)): loc.leading_comments.strip()
                for loc in proto.source_code_info.location
                if loc.leading_comments.strip()
            }
    raise AssertionError(f"{name} not served")


@pytest.mark.parametrize("service", [V1_SERVICE, V1ALPHA_SERVICE])
def test_reflection_v1_and_v1alpha_serve_the_comments(server: RunningServer, service: str) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        listed = reflect(channel, service, reflection_pb2.ServerReflectionRequest(list_services=""))
        names = {s.name for s in listed.list_services_response.service}  # type: ignore[attr-defined]
        assert {"usageledger.v1.SupportService", V1_SERVICE, V1ALPHA_SERVICE} <= names
        found = reflect(
            channel,
            service,
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="usageledger.v1.DisputeInvoicedRange"),
        )
        files = list(found.file_descriptor_response.file_descriptor_proto)  # type: ignore[attr-defined]
        comments = comments_of(files, "usageledger/v1/support.proto")
        assert any("R22" in text and "invoice" in text for text in comments.values())
        # google.rpc.ErrorInfo, what every error carries, is described too, with googleapis' own comments.
        error = reflect(
            channel, service, reflection_pb2.ServerReflectionRequest(file_containing_symbol="google.rpc.ErrorInfo")
        )
        error_files = list(error.file_descriptor_response.file_descriptor_proto)  # type: ignore[attr-defined]
        assert any("reason" in text for text in comments_of(error_files, "google/rpc/error_details.proto").values())


def test_the_google_rpc_protos_ship_beside_ours_unmodified() -> None:
    from google.rpc import error_details_pb2

    installed = Path(error_details_pb2.__file__).parent  # googleapis-common-protos, a namespace package
    for name in ("status.proto", "error_details.proto", "code.proto"):
        shipped = ROOT / "proto" / "google" / "rpc" / name
        assert shipped.read_bytes() == (installed / name).read_bytes(), name


# -- error reasons (docs/errors.md) ---------------------------------------------------------------------------------

ERRORS_DOC = ROOT / "docs" / "errors.md"


def documented_reasons() -> set[str]:
    text = ERRORS_DOC.read_text(encoding="utf-8")
    table = set(re.findall(r"^\| `([A-Z_<>]+)` \|", text, re.MULTILINE))
    not_over_the_api = text.split("Not over the API:", 1)[1].split("\n\n", 1)[0]
    return table | set(re.findall(r"`([A-Z][A-Z_]+)`", not_over_the_api))


def reasons_in_code() -> set[str]:
    """Every reason the code can put in an ErrorInfo: exception classes' `reason`, the server's own constants,
    the access policy's refusals and the field violations that name their kind."""
    found: set[str] = set()
    for path in [p for top in ("ledger", "storage", "wire", "server") for p in (ROOT / top).rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        found |= set(re.findall(r'^\s+reason = "([A-Z][A-Z_]+)"', text, re.MULTILINE))
        found |= set(re.findall(r'^REASON = "([A-Z][A-Z_]+)"', text, re.MULTILINE))
        found |= set(re.findall(r'_deny\(\s*context,\s*method,\s*principal,\s*"([A-Z][A-Z_]+)"', text))
        found |= set(re.findall(r'_status\(code_pb2\.\w+,\s*"([A-Z][A-Z_]+)"', text))
        found |= set(re.findall(r'FieldViolation\([^()]*?"([A-Z][A-Z_]+)"\s*,?\s*\)', text, re.DOTALL))
    return found


def test_every_reason_the_code_can_return_is_documented() -> None:
    in_code = reasons_in_code()
    assert {"ORG_NOT_FOUND", "WINDOW_TOO_LONG", "PRICE_UNKNOWN_AT_TIME", "ROLE_NOT_ALLOWED"} <= in_code
    assert in_code - documented_reasons() == set()
    assert all(re.fullmatch(r"[A-Z]+(_[A-Z]+)*|INVALID_<FIELD>", reason) for reason in documented_reasons())


def test_every_rpcs_reasons_are_documented() -> None:
    from usageledger.v1 import account_pb2, audit_pb2, billing_pb2, ledger_pb2, pricing_pb2, support_pb2, usage_pb2

    text = ERRORS_DOC.read_text(encoding="utf-8")
    listed = dict(re.findall(r"^- `(\w+\.\w+)`: (.+)$", text, re.MULTILINE))
    rpcs = {
        f"{service.name}.{method.name}"
        for module in (ledger_pb2, usage_pb2, pricing_pb2, audit_pb2, support_pb2, billing_pb2, account_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert rpcs - set(listed) == set(), "RPCs without their reasons in docs/errors.md"
    assert set(listed) - rpcs == set(), "docs/errors.md lists RPCs that do not exist"
    table = documented_reasons()
    for rpc, reasons in listed.items():
        named = set(re.findall(r"`([A-Z][A-Z_]+)`", reasons))
        assert named <= table, (rpc, named - table)
        assert named or reasons.strip() == "none", rpc


def test_error_info_names_the_failure_kind_and_the_offending_values(
    server: RunningServer, make_event: EventFactory
) -> None:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status
    from usageledger.v1 import usage_pb2 as upb
    from usageledger.v1 import usage_pb2_grpc as upb_grpc

    from wire.convert import micros_to_timestamp

    with LedgerClient(f"127.0.0.1:{server.port}") as client:
        client.append_events([make_event()])  # the org exists: the window, not the org, is what is wrong
    request = upb.QueryUsageRequest(org_id=make_event()["org_id"])
    request.start_time.CopyFrom(micros_to_timestamp(0))
    request.end_time.CopyFrom(micros_to_timestamp(500 * 86400 * 1_000_000))  # 500 days: more than 400
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel, pytest.raises(grpc.RpcError) as raised:
        upb_grpc.UsageServiceStub(channel).QueryUsage(request)
    status = rpc_status.from_call(raised.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    [packed] = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    packed.Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "WINDOW_TOO_LONG",
        "usageledger.v1",
        {"field": "end_time", "fields": "end_time"},
    )


def test_field_violations_name_their_kind() -> None:
    from ledger.errors import FieldViolation, InvalidInput

    assert FieldViolation("events[3].occurred_at", "in the future").kind == "INVALID_OCCURRED_AT"
    assert FieldViolation("rates[A100].flex_per_second", "negative").kind == "INVALID_FLEX_PER_SECOND"
    assert FieldViolation("end_time", "too long", "WINDOW_TOO_LONG").kind == "WINDOW_TOO_LONG"
    refused = InvalidInput([FieldViolation("org_id", "required"), FieldViolation("ticket", "required")])
    assert (refused.reason, dict(refused.metadata)) == (
        "INVALID_ORG_ID",
        {"field": "org_id", "fields": "org_id,ticket"},
    )


def test_every_message_field_and_enum_value_served_has_a_comment() -> None:
    """What buf's COMMENTS rules hold in scripts/lint, checked on what reflection actually serves."""
    from server.reflection import documented_files

    missing = []
    for name, data in documented_files().items():
        if not name.startswith("usageledger/"):
            continue
        proto = descriptor_pb2.FileDescriptorProto.FromString(data)
        commented = {tuple(loc.path) for loc in proto.source_code_info.location if loc.leading_comments.strip()}

        wanted: list[tuple[tuple[int, ...], str]] = []
        for m, message in enumerate(proto.message_type):
            wanted.append(((4, m), message.name))
            for f, field in enumerate(message.field):
                wanted.append(((4, m, 2, f), f"{message.name}.{field.name}"))
        for e, enum in enumerate(proto.enum_type):
            wanted.append(((5, e), enum.name))
            for v, value in enumerate(enum.value):
                wanted.append(((5, e, 2, v), f"{enum.name}.{value.name}"))
        for s, service in enumerate(proto.service):
            wanted.append(((6, s), service.name))
            for r, method in enumerate(service.method):
                wanted.append(((6, s, 2, r), f"{service.name}.{method.name}"))
        missing += [f"{name}: {what}" for path, what in wanted if path not in commented]
    assert missing == []
