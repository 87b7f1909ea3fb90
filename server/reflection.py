"""Server reflection, v1 and v1alpha, answering with each file's descriptor as written, comments included.

The generated `_pb2` modules carry descriptors without source info, so reflection answered with no comments and
grpcurl-style tools showed undocumented messages (issue #25). scripts/gen_protos.py also writes
`usageledger/v1/descriptors.binpb`, every file's descriptor with source info (google/rpc's included); this module
serves those bytes in place of the stripped ones. grpcio-reflection implements v1alpha only; v1
(`grpc.reflection.v1.ServerReflection`) has the same messages on the wire, so the same servicer answers both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cache
from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1_SERVICE = "grpc.reflection.v1.ServerReflection"
V1ALPHA_SERVICE: str = reflection.SERVICE_NAME


@cache
def documented_files() -> dict[str, bytes]:
    """Each .proto file's FileDescriptorProto with source info, serialized, by file name."""
    data = resources.files("usageledger.v1").joinpath("descriptors.binpb").read_bytes()
    found = descriptor_pb2.FileDescriptorSet.FromString(data)
    return {file.name: file.SerializeToString() for file in found.file}


class _DocumentedFile:
    """A FileDescriptor whose CopyToProto gives the documented descriptor when there is one."""

    def __init__(self, descriptor: Any, documented: dict[str, bytes]) -> None:
        self._descriptor = descriptor
        self._documented = documented
        self.name: str = descriptor.name

    @property
    def dependencies(self) -> list[_DocumentedFile]:
        return [_DocumentedFile(d, self._documented) for d in self._descriptor.dependencies]

    def CopyToProto(self, proto: descriptor_pb2.FileDescriptorProto) -> None:
        documented = self._documented.get(self.name)
        if documented is None:
            self._descriptor.CopyToProto(proto)
        else:
            proto.MergeFromString(documented)


class _DocumentedPool:
    """The default descriptor pool, its files answered with their comments (what reflection's servicer asks)."""

    def __init__(self, documented: dict[str, bytes]) -> None:
        self._pool = descriptor_pool.Default()
        self._documented = documented

    def FindFileByName(self, name: str) -> _DocumentedFile:
        return _DocumentedFile(self._pool.FindFileByName(name), self._documented)

    def FindFileContainingSymbol(self, symbol: str) -> _DocumentedFile:
        return _DocumentedFile(self._pool.FindFileContainingSymbol(symbol), self._documented)

    def __getattr__(self, name: str) -> Any:  # FindMessageTypeByName, FindExtensionByNumber, FindAllExtensions
        return getattr(self._pool, name)


def enable_reflection(service_names: Iterable[str], server: grpc.Server) -> tuple[str, str]:
    """Serve reflection v1 and v1alpha for `service_names` (both reflection services listed too); returns the
    reflection services' names."""
    names = (*service_names, V1_SERVICE, V1ALPHA_SERVICE)
    servicer = reflection.ReflectionServicer(names, pool=_DocumentedPool(documented_files()))
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)

    def info(requests: Iterator[reflection_pb2.ServerReflectionRequest], context: grpc.ServicerContext) -> Any:
        return servicer.ServerReflectionInfo(requests, context)

    handler = grpc.method_handlers_generic_handler(
        V1_SERVICE,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                info,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    return V1_SERVICE, V1ALPHA_SERVICE
