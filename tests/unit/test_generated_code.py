"""The committed generated code matches what scripts/gen_proto.py makes now."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]


def test_generated_protobuf_code_is_not_stale(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), str(tmp_path)], check=True
    )
    fresh_dir = tmp_path / "mpim" / "proto"
    committed_dir = ROOT / "mpim" / "proto"
    protos = sorted(p.stem for p in committed_dir.glob("*.proto"))
    assert protos, "no .proto files found"
    for name in protos:
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert (committed_dir / f"{name}{suffix}").exists(), f"{name}{suffix} not generated"
        # Compare what the code means (its descriptor), not the protoc version banner.
        module = importlib.import_module(f"mpim.proto.{name}_pb2")
        committed = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        fresh_text = (fresh_dir / f"{name}_pb2.py").read_text()
        assert f"mpim/proto/{name}.proto" in fresh_text
        assert committed.name == f"mpim/proto/{name}.proto"
        source = (committed_dir / f"{name}.proto").read_text()
        for message in committed.message_type:
            assert f"message {message.name}" in source
        assert _descriptor_bytes(fresh_text) == module.DESCRIPTOR.serialized_pb, (
            f"mpim/proto/{name}_pb2.py is stale: run scripts/gen_proto.py"
        )
    for generated in ("interfaces.py", "clients.py"):
        assert (fresh_dir / generated).read_text() == (committed_dir / generated).read_text(), (
            f"mpim/proto/{generated} is stale: run scripts/gen_proto.py"
        )


def _descriptor_bytes(generated_source: str) -> bytes:
    """The serialized FileDescriptorProto literal protoc embeds in a _pb2.py."""
    marker = "AddSerializedFile("
    start = generated_source.index(marker) + len(marker)
    end = generated_source.index(")\n", start)
    literal = generated_source[start:end]
    value = ast.literal_eval(literal)
    assert isinstance(value, bytes)
    return value


def test_generated_grpc_clients_cover_every_interface_method() -> None:
    from mpim.proto import clients, interfaces

    for name in interfaces.__all__:
        interface = getattr(interfaces, name)
        client = getattr(clients, f"{name}Client")
        wanted = {n for n in vars(interface) if not n.startswith("_")}
        assert wanted <= set(vars(client)), f"{name}Client lacks {wanted - set(vars(client))}"


def test_every_service_implementation_matches_its_interface() -> None:
    from mpim.proto import interfaces
    from mpim.services.group import GroupServiceImpl
    from mpim.services.message import MessageServiceImpl
    from mpim.services.presence import MemoryPresenceService
    from mpim.services.user import UserServiceImpl

    pairs = [
        (interfaces.UserService, UserServiceImpl),
        (interfaces.GroupService, GroupServiceImpl),
        (interfaces.MessageService, MessageServiceImpl),
        (interfaces.PresenceService, MemoryPresenceService),
    ]
    for interface, impl in pairs:
        wanted = {n for n in vars(interface) if not n.startswith("_")}
        missing = {n for n in wanted if not callable(getattr(impl, n, None))}
        assert not missing, f"{impl.__name__} lacks {missing}"
