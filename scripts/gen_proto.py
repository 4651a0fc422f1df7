"""Regenerate mpim/proto from its .proto sources.

Writes *_pb2.py, *_pb2.pyi and *_pb2_grpc.py with grpcio-tools' protoc, then
mpim/proto/interfaces.py: one typing.Protocol per service, the async
interface that in-process services and gRPC clients both implement.
Run:  .venv/bin/python scripts/gen_proto.py [OUT_DIR]
"""

from __future__ import annotations

import importlib.resources
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "mpim" / "proto"


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("*.proto"))


def run_protoc(out_root: Path, descriptor_out: Path | None = None) -> None:
    """Compile every .proto; out_root receives mpim/proto/*."""
    include = str(importlib.resources.files("grpc_tools") / "_proto")
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
    ]
    if descriptor_out is not None:
        args.append(f"--descriptor_set_out={descriptor_out}")
    args += [str(p.relative_to(ROOT)) for p in proto_files()]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def render_interfaces(fds: descriptor_pb2.FileDescriptorSet) -> str:
    """Render the typing.Protocol classes for every service in the set."""
    type_module: dict[str, str] = {}
    for f in fds.file:
        module = Path(f.name).stem + "_pb2"
        for m in f.message_type:
            type_module[f".{f.package}.{m.name}"] = f"{module}.{m.name}"
    modules = sorted({Path(f.name).stem + "_pb2" for f in fds.file if f.service})
    used: set[str] = set()
    classes: list[str] = []
    for f in sorted(fds.file, key=lambda f: f.name):
        for service in f.service:
            lines = [
                "@runtime_checkable",
                f"class {service.name}(Protocol):",
                f'    """The {service.name} contract from {f.name}."""',
            ]
            for method in service.method:
                req = type_module[method.input_type]
                rep = type_module[method.output_type]
                used.update({req.split(".")[0], rep.split(".")[0]})
                lines.append("")
                lines.append(f"    async def {method.name}(self, request: {req}) -> {rep}: ...")
            classes.append("\n".join(lines))
    imports = "\n".join(f"from mpim.proto import {m}" for m in sorted(used | set(modules)))
    header = (
        '"""Async service interfaces generated from the .proto files.\n\n'
        "Do not edit: run scripts/gen_proto.py. Embedded services implement these\n"
        'directly; gRPC clients implement them over the network."""\n\n'
        "from __future__ import annotations\n\n"
        "from typing import Protocol, runtime_checkable\n\n"
    )
    return (
        header
        + imports
        + "\n\n\n"
        + "\n\n\n".join(classes)
        + "\n\n__all__ = ["
        + ", ".join(f'"{c.split("class ")[1].split("(")[0]}"' for c in classes)
        + "]\n"
    )


# Reads that may be retried on another instance; a naming rule so a new
# method is classified without a list to keep in sync.
IDEMPOTENT_PREFIXES = ("Get", "List", "Sync", "History", "Ping", "Authenticate")


def render_clients(fds: descriptor_pb2.FileDescriptorSet) -> str:
    """Render one RpcCaller subclass per service: the gRPC side of each interface."""
    type_module: dict[str, str] = {}
    for f in fds.file:
        module = Path(f.name).stem + "_pb2"
        for m in f.message_type:
            type_module[f".{f.package}.{m.name}"] = f"{module}.{m.name}"
    used: set[str] = set()
    classes: list[str] = []
    names: list[str] = []
    for f in sorted(fds.file, key=lambda f: f.name):
        for service in f.service:
            name = f"{service.name}Client"
            names.append(name)
            idempotent = sorted(
                m.name for m in service.method if m.name.startswith(IDEMPOTENT_PREFIXES)
            )
            lines = [
                f"class {name}(RpcCaller):",
                f'    """{service.name} over gRPC; implements interfaces.{service.name}."""',
                "",
                "    IDEMPOTENT = frozenset({" + ", ".join(f'"{m}"' for m in idempotent) + "})",
            ]
            for method in service.method:
                req = type_module[method.input_type]
                rep = type_module[method.output_type]
                used.update({req.split(".")[0], rep.split(".")[0]})
                path = f"/{f.package}.{service.name}/{method.name}"
                lines.append("")
                lines.append(f"    async def {method.name}(self, request: {req}) -> {rep}:")
                lines.append(
                    f'        return await self._invoke("{method.name}", "{path}", request, {rep})'
                )
            classes.append("\n".join(lines))
    imports = "\n".join(f"from mpim.proto import {m}" for m in sorted(used))
    header = (
        '"""gRPC clients generated from the .proto files.\n\n'
        "Do not edit: run scripts/gen_proto.py. Each class implements the matching\n"
        'interface in interfaces.py, so callers cannot tell it from a local service."""\n\n'
        "from __future__ import annotations\n\n"
    )
    return (
        header
        + imports
        + "\nfrom mpim.rpc.caller import RpcCaller\n\n\n"
        + "\n\n\n".join(classes)
        + "\n\n__all__ = ["
        + ", ".join(f'"{n}"' for n in names)
        + "]\n"
    )


def generate(out_root: Path) -> None:
    (out_root / "mpim" / "proto").mkdir(parents=True, exist_ok=True)
    descriptor = out_root / "descriptors.pb"
    run_protoc(out_root, descriptor)
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor.read_bytes())
    descriptor.unlink()
    (out_root / "mpim" / "proto" / "interfaces.py").write_text(render_interfaces(fds))
    (out_root / "mpim" / "proto" / "clients.py").write_text(render_clients(fds))


def main() -> None:
    out_root = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    generate(out_root)


if __name__ == "__main__":
    main()
