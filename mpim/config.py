"""One typed settings object: defaults < TOML file < ``MPIM_*`` environment < flags.

Nested sections map to environment variables with a double underscore, e.g.
``MPIM_GATEWAY__PORT=6001`` or ``MPIM_SECURITY__TOKEN_TTL_SECONDS=3600``.
A bad value raises ``ConfigError`` naming the key that is wrong.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the key."""


class GatewaySettings(BaseModel):
    """The client-facing TCP endpoint and the limits it enforces per connection."""

    host: str = "127.0.0.1"
    port: int = Field(default=6000, ge=0, le=65535)
    gateway_id: str = Field(default="gw-1", min_length=1, max_length=64)
    max_line_bytes: int = Field(default=64 * 1024, ge=256)
    max_text_bytes: int = Field(default=16 * 1024, ge=1)
    # Token bucket per connection: sustained commands per second and burst.
    # 0 disables. The defaults sit well above what the load tests send.
    rate_limit_per_second: float = Field(default=5000.0, ge=0)
    rate_limit_burst: int = Field(default=10000, ge=1)
    # A reader whose unsent output exceeds this is disconnected; its messages
    # stay in its inbox for SYNC/PULL.
    max_output_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    # Pipelined commands read ahead of the one being executed.
    max_pending_commands: int = Field(default=1024, ge=1)
    # Connections beyond this get `-ERR server busy` and are closed.
    max_connections: int = Field(default=50_000, ge=1)
    # A connection that has not logged in after this long is closed (0: never).
    login_timeout_seconds: float = Field(default=60.0, ge=0)
    # Dead peers: TCP keepalive probes start after 1 to 2 times this much
    # silence (each connection draws its own, so probes do not all go out
    # at once) and a peer that misses 3 (10 s apart) is dropped by the kernel
    # (0: off).
    tcp_keepalive_seconds: float = Field(default=30.0, ge=0, le=16383)
    # A logged-in connection that sends nothing, not even PING, for this long
    # gets `-ERR idle timeout` and is closed (0: never; clients PING to stay).
    idle_timeout_seconds: float = Field(default=0.0, ge=0)
    sync_page_size: int = Field(default=500, ge=1, le=10000)
    pull_page_size: int = Field(default=500, ge=1, le=10000)
    shutdown_grace_seconds: float = Field(default=3.0, ge=0)
    # HTTP endpoint of the gateway: WebSocket at /ws, the web client at /,
    # metrics and health. 0 picks a free port.
    http_enabled: bool = True
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=6001, ge=0, le=65535)


class StoreSettings(BaseModel):
    """Where durable state lives. Empty url: SQLite in the data directory."""

    url: str = ""
    # "FULL" makes every acknowledged message survive power loss (WAL fsync
    # per group commit); "NORMAL" survives process crashes only.
    sqlite_synchronous: str = Field(default="FULL", pattern="^(FULL|NORMAL|OFF)$")
    max_batch: int = Field(default=1000, ge=1)
    # MySQL/MariaDB: how long a connection waits for any answer before it
    # counts as broken (a frozen server then fails requests instead of
    # holding them). Above InnoDB's 50 s lock wait.
    server_timeout_seconds: float = Field(default=60.0, ge=1)
    # Commit in a process of its own, so commits never wait for the event
    # loop's GIL (see mpim/store/writer_child.py): embedded MPIM and a
    # distributed message service; False keeps a thread.
    writer_process: bool = True
    # MySQL/MariaDB, PostgreSQL: how often a message service folds delivered
    # marks into pull floors (each pass looks at 1,000 users); 0: never, and
    # users who never PULL keep a row per delivered message. Off by default:
    # at 5 s it raised the distributed p99 at 5,000 msg/s from 78-114 ms to
    # 130-132 ms on a 2-core machine (docs/architecture.md).
    fold_marks_seconds: float = Field(default=0.0, ge=0)

    @field_validator("fold_marks_seconds")
    @classmethod
    def _a_pause_or_never(cls, seconds: float) -> float:
        if 0 < seconds < 0.05:
            raise ValueError("must be 0 (never) or at least 0.05 s: each pass queries the store")
        return seconds


class SecuritySettings(BaseModel):
    """Password hashing, tokens and login throttling."""

    token_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=1)
    # argon2id, OWASP's recommended minimum: 19 MiB, 2 passes, 1 lane.
    argon2_memory_kib: int = Field(default=19 * 1024, ge=8)
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_parallelism: int = Field(default=1, ge=1)
    hash_threads: int = Field(default=2, ge=1)
    # After this many consecutive failures for one username, further logins
    # are refused for a back-off that doubles up to login_lockout_max_seconds.
    login_failures_allowed: int = Field(default=5, ge=1)
    login_lockout_seconds: float = Field(default=1.0, ge=0)
    login_lockout_max_seconds: float = Field(default=60.0, ge=0)
    login_throttle_entries: int = Field(default=100_000, ge=100)


class CacheSettings(BaseModel):
    """In-process cache bounds and TTLs for cache-aside reads."""

    max_entries: int = Field(default=200_000, ge=0)
    ttl_seconds: float = Field(default=300.0, gt=0)


class RedisSettings(BaseModel):
    """Cache and push bus in distributed mode."""

    url: str = "redis://127.0.0.1:6379/0"
    # Every key and channel starts with this, so deployments (and test runs)
    # sharing one Redis never collide.
    key_prefix: str = "mpim:"
    socket_timeout_seconds: float = Field(default=1.0, gt=0)
    # Connections per process; a request finding all busy waits for one (up
    # to socket_timeout_seconds) instead of failing.
    max_connections: int = Field(default=64, ge=2)


class ZooKeeperSettings(BaseModel):
    """Service discovery in distributed mode."""

    hosts: str = "127.0.0.1:2181"
    chroot: str = Field(default="/mpim", pattern="^/.*")
    session_timeout_seconds: float = Field(default=10.0, gt=0)


class RpcSettings(BaseModel):
    """This process's gRPC endpoint (service roles) and its calls to others."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    # What peers are told to dial; defaults to host.
    advertise_host: str = ""
    deadline_seconds: float = Field(default=5.0, gt=0)
    # /metrics, /healthz and /readyz of a service process (on ``host``); 0
    # picks a free port, published in ZooKeeper as the ``metrics`` metadata.
    metrics_port: int = Field(default=0, ge=0, le=65535)


class LogSettings(BaseModel):
    """Structured log lines (mpim/logs.py): their format and where they go.

    ``mpim cluster`` sets ``file`` (and the rotation) per process through
    ``MPIM_LOG__*`` so each process has its own ``<logs_dir>/<instance>.log``.
    """

    format: Literal["kv", "json"] = "kv"
    # A size-rotated file, in addition to stderr (or instead: stderr = false).
    file: Path | None = None
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=0)  # 0: never rotate
    backups: int = Field(default=5, ge=0, le=100)
    stderr: bool = True

    @field_validator("file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """``MPIM_LOG__FILE=`` (empty) means no file, not the current directory."""
        return None if value == "" else value


class Settings(BaseSettings):
    """Everything one MPIM process needs to start."""

    model_config = SettingsConfigDict(env_prefix="MPIM_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Path("mpim-data")
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    log: LogSettings = LogSettings()
    use_uvloop: bool = True
    gateway: GatewaySettings = GatewaySettings()
    store: StoreSettings = StoreSettings()
    security: SecuritySettings = SecuritySettings()
    cache: CacheSettings = CacheSettings()
    redis: RedisSettings = RedisSettings()
    zookeeper: ZooKeeperSettings = ZooKeeperSettings()
    rpc: RpcSettings = RpcSettings()
    # Unique per process in a cluster; also the snowflake worker id source.
    instance_id: str = Field(default="", max_length=64)

    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{self.data_dir / 'mpim.sqlite3'}"


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "(root)"
        parts.append(f"{key}: {error['msg']}")
    return "invalid setting " + "; ".join(parts)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from an optional TOML file, the environment and overrides.

    ``overrides`` are flag values: nested sections as dicts, ``None`` values
    ignored so unset flags do not mask the file or environment.
    """
    file_values: dict[str, Any] = {}
    if config_file is not None:
        try:
            file_values = tomllib.loads(config_file.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from None
    flags = {k: v for k, v in overrides.items() if v is not None}
    for section, values in list(flags.items()):
        if isinstance(values, dict):
            flags[section] = {k: v for k, v in values.items() if v is not None}
    try:
        env_only = Settings()
        merged = _merge(_merge(file_values, _explicit_env(env_only)), flags)
        return Settings.model_validate(merged) if merged else env_only
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _explicit_env(settings: Settings) -> dict[str, Any]:
    """The fields the environment actually set, so file values are not masked."""
    return settings.model_dump(exclude_unset=True)
