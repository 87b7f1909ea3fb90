"""The API says what it means (issue #25 item 5): reflection v1 and v1alpha serve the protos' comments, the
google/rpc protos needed to read error details ship beside ours, and every error reason is documented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from server.app import RunningServer, start_server
from server.reflection import V1_SERVICE, V1ALPHA_SERVICE
from tests.conftest import FixedClock

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
