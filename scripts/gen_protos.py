"""Generate the Python protobuf and gRPC modules from proto/ (run after editing a .proto; --check fails when stale)."""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", ".binpb")
# Every file's descriptor with its comments (source info), which the generated modules leave out: the server's
# reflection serves these, so grpcurl-style tools show each message's and field's documentation (server/reflection.py).
DESCRIPTOR_SET = Path("usageledger") / "v1" / "descriptors.binpb"


def generate(out_dir: Path) -> None:
    # google/rpc ships beside ours for other languages' clients (proto/google/rpc/README.md); Python has them from
    # googleapis-common-protos, so only usageledger is generated.
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "usageledger").rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    described = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))  # google/rpc included
    (out_dir / DESCRIPTOR_SET).parent.mkdir(parents=True, exist_ok=True)
    descriptor_args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        "--include_source_info",
        "--include_imports",
        f"--descriptor_set_out={out_dir / DESCRIPTOR_SET}",
        *described,
    ]
    if protoc.main(descriptor_args) != 0:
        raise SystemExit("protoc failed (descriptor set)")


def generated_files(base: Path) -> dict[str, Path]:
    return {str(p.relative_to(base)): p for p in base.rglob("*") if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed generated code is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh_dir = Path(tmp)
        generate(fresh_dir)
        fresh = generated_files(fresh_dir)
        current = generated_files(PROTO_DIR)
        stale = sorted(
            name
            for name in fresh.keys() | current.keys()
            if name not in fresh or name not in current or not filecmp.cmp(fresh[name], current[name], shallow=False)
        )
        if args.check:
            if stale:
                print("generated code is stale; run: python scripts/gen_protos.py", file=sys.stderr)
                for name in stale:
                    print(f"  {name}", file=sys.stderr)
                return 1
            print(f"generated code is current ({len(fresh)} files)")
            return 0
        for name in stale:
            if name in current and name not in fresh:
                current[name].unlink()
        for name, path in fresh.items():
            target = PROTO_DIR / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        print(f"wrote {len(fresh)} files under proto/")
        return 0


if __name__ == "__main__":
    sys.exit(main())
