"""The cluster file: ordinary MPIM settings plus a ``[cluster]`` table of processes.

One file describes a local cluster so that it can be read, copied and
edited as a whole (``deploy/cluster.toml``). ``Settings`` forbids unknown
top-level keys, so ``load_cluster`` takes ``[cluster]`` out and renders the
rest as a plain settings file (``settings_toml``) that every process is
started with: the processes see exactly what the tool validated, and their
own ``MPIM_*`` environment still overrides it as usual.

Relative paths in ``[cluster]`` are relative to the cluster file's
directory, so the tool behaves the same from any working directory.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mpim.cluster.tomlwrite import dumps
from mpim.config import ConfigError, Settings, load_settings

logger = logging.getLogger(__name__)

GATEWAY: Final = "gateway"
# The user service starts alone because it is the first to open the store,
# and schema creation is not safe to run from several processes at once.
FIRST_SERVICE: Final = "user"
# Stopped right after the gateways: it flushes queued writes and pushes,
# which need the other services (presence, user) still up.
DRAINS_LAST: Final = "message"

_NAME_PATTERN: Final = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"


class ClusterConfigError(ConfigError):
    """The cluster file is unreadable or wrong; the message names the file and the key."""


class ProcessSpec(BaseModel):
    """One process of the cluster: ``mpim serve <role> --instance-id … --port …``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    # Also the pid and log file names, and the ZooKeeper node name.
    instance_id: str = Field(pattern=_NAME_PATTERN)
    # Fixed (never 0) so that status can show and probe it without asking anyone.
    port: int = Field(ge=1, le=65535)
    # Gateways only: the HTTP/WebSocket port. Omitted: HTTP is off for this gateway.
    http_port: int | None = Field(default=None, ge=1, le=65535)
    # Services only: /metrics, /healthz and /readyz (gateways serve them on http_port).
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    log_level: str | None = Field(default=None, pattern="^(DEBUG|INFO|WARNING|ERROR)$")

    @property
    def is_gateway(self) -> bool:
        return self.role == GATEWAY


class ClusterSection(BaseModel):
    """The ``[cluster]`` table."""

    model_config = ConfigDict(extra="forbid")

    logs_dir: Path = Path("logs")
    run_dir: Path = Path("run")
    start_timeout_seconds: float = Field(default=30.0, gt=0)
    stop_timeout_seconds: float = Field(default=10.0, gt=0)
    # <instance>.log is rotated by the process as it grows past this (to .1,
    # .2, …); <instance>.out is checked at each start. 0: never rotate.
    log_max_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    log_backups: int = Field(default=3, ge=0, le=100)
    process: list[ProcessSpec] = Field(min_length=1)


@dataclass(frozen=True)
class ClusterConfig:
    """A validated cluster file: where things go, which processes, and their settings."""

    path: Path
    logs_dir: Path
    run_dir: Path
    start_timeout: float
    stop_timeout: float
    log_max_bytes: int
    log_backups: int
    processes: tuple[ProcessSpec, ...]
    settings: Settings
    settings_toml: str

    @property
    def settings_file(self) -> Path:
        """Where ``start`` writes ``settings_toml`` for the processes to read."""
        return self.run_dir / "settings.toml"

    def log_file(self, spec: ProcessSpec) -> Path:
        """The process's structured log, written and rotated by the process itself."""
        return self.logs_dir / f"{spec.instance_id}.log"

    def out_file(self, spec: ProcessSpec) -> Path:
        """The process's captured stdout and stderr: readiness line, crash tracebacks."""
        return self.logs_dir / f"{spec.instance_id}.out"

    def pid_file(self, instance_id: str) -> Path:
        return self.run_dir / f"{instance_id}.pid"

    def address(self, spec: ProcessSpec) -> str:
        """Where the process serves, as peers are told (gateway TCP or service gRPC)."""
        if spec.is_gateway:
            return f"{self.settings.gateway.host}:{spec.port}"
        rpc = self.settings.rpc
        return f"{rpc.advertise_host or rpc.host}:{spec.port}"

    def probe_host(self, spec: ProcessSpec) -> str:
        """The host to dial for a health check from this machine."""
        return dial_host(self.settings.gateway.host if spec.is_gateway else self.settings.rpc.host)


def dial_host(host: str) -> str:
    """The address to dial for one a process listens on (a wildcard means loopback)."""
    return "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host


def load_cluster(path: Path) -> ClusterConfig:
    """Read and validate ``path``; ClusterConfigError names the file and the bad key."""
    try:
        document = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ClusterConfigError(f"cannot read cluster file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ClusterConfigError(f"cluster file {path} is not valid TOML: {exc}") from None
    raw = document.pop("cluster", None)
    if not isinstance(raw, dict):
        raise ClusterConfigError(f"{path}: no [cluster] table listing the processes")
    try:
        section = ClusterSection.model_validate(raw)
    except ValidationError as exc:
        raise ClusterConfigError(f"{path}: {_describe(exc)}") from None
    _check_processes(path, section.process)
    settings_toml = _settings_toml(path, document)
    settings = _validated_settings(path, settings_toml)
    base = path.resolve().parent
    return ClusterConfig(
        path=path,
        logs_dir=base / section.logs_dir,
        run_dir=base / section.run_dir,
        start_timeout=section.start_timeout_seconds,
        stop_timeout=section.stop_timeout_seconds,
        log_max_bytes=section.log_max_bytes,
        log_backups=section.log_backups,
        processes=tuple(section.process),
        settings=settings,
        settings_toml=settings_toml,
    )


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        key = "cluster"
        for part in error["loc"]:
            key += f"[{part}]" if isinstance(part, int) else f".{part}"
        parts.append(f"{key}: {error['msg']}")
    return "; ".join(parts)


def _check_processes(path: Path, processes: Sequence[ProcessSpec]) -> None:
    """Refuse clashes and unknown roles now, not after half the cluster started."""
    known = serve_roles()
    ids: dict[str, int] = {}
    ports: dict[int, str] = {}

    def fail(index: int, key: str, message: str) -> NoReturn:
        raise ClusterConfigError(f"{path}: cluster.process[{index}].{key}: {message}")

    for index, spec in enumerate(processes):
        if known and spec.role not in known:
            fail(index, "role", f"unknown role {spec.role!r} (expected one of {', '.join(known)})")
        if spec.instance_id in ids:
            fail(
                index,
                "instance_id",
                f"{spec.instance_id!r} is also process[{ids[spec.instance_id]}]",
            )
        ids[spec.instance_id] = index
        if spec.http_port is not None and not spec.is_gateway:
            fail(index, "http_port", "only gateways have an HTTP port")
        if spec.metrics_port is not None and spec.is_gateway:
            fail(index, "metrics_port", "a gateway serves /metrics on its http_port")
        for key, port in (
            ("port", spec.port),
            ("http_port", spec.http_port),
            ("metrics_port", spec.metrics_port),
        ):
            if port is not None and port in ports:
                fail(index, key, f"port {port} is already used by {ports[port]}")
            if port is not None:
                ports[port] = f"{spec.instance_id} ({key})"


def serve_roles() -> tuple[str, ...]:
    """The roles ``mpim serve`` accepts, read from its own parser (the one authority)."""
    from mpim.cli import build_parser

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            serve = action.choices.get("serve")
            for serve_action in serve._actions if serve is not None else []:
                if serve_action.dest == "role" and serve_action.choices is not None:
                    return tuple(str(choice) for choice in serve_action.choices)
    return ()


def _settings_toml(path: Path, document: dict[str, Any]) -> str:
    header = (
        f"# Written by `mpim cluster start` from {path.resolve()} (without its [cluster]\n"
        "# table); every process of the cluster reads it. Edit that file, not this one.\n\n"
    )
    try:
        text = dumps(document)
    except TypeError as exc:
        raise ClusterConfigError(f"{path}: {exc}") from None
    if tomllib.loads(text) != document:  # pragma: no cover - a writer bug, not a user error
        raise ClusterConfigError(f"{path}: the settings cannot be written back as TOML")
    return header + text


def _validated_settings(path: Path, settings_toml: str) -> Settings:
    """Settings exactly as a process will load them: from the file, under the environment."""
    with tempfile.TemporaryDirectory(prefix="mpim-cluster-") as tmp:
        settings_file = Path(tmp) / "settings.toml"
        settings_file.write_text(settings_toml)
        try:
            return load_settings(settings_file)
        except ConfigError as exc:
            raise ClusterConfigError(f"{path}: {exc}") from None


def start_waves(processes: Sequence[ProcessSpec]) -> list[list[ProcessSpec]]:
    """Start order: the user service alone, then every other service, then the gateways.

    Services before gateways so a gateway finds them registered when it
    comes up; processes within a wave start together.
    """
    return _waves(processes, lambda s: 0 if s.role == FIRST_SERVICE else 2 if s.is_gateway else 1)


def stop_waves(processes: Sequence[ProcessSpec]) -> list[list[ProcessSpec]]:
    """Stop order: gateways (no new work), then message (drains), then the rest."""
    return _waves(processes, lambda s: 0 if s.is_gateway else 1 if s.role == DRAINS_LAST else 2)


def _waves(
    processes: Sequence[ProcessSpec], rank: Callable[[ProcessSpec], int]
) -> list[list[ProcessSpec]]:
    waves: dict[int, list[ProcessSpec]] = {}
    for spec in processes:
        waves.setdefault(rank(spec), []).append(spec)
    return [waves[key] for key in sorted(waves)]
