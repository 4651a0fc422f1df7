"""Fixtures for tests against a real Redis (a pytest plugin).

Use it with ``pytest_plugins = ["tests.support.redis"]``. Each test gets its
own key prefix (``mpimtest:<hex>:``) and its keys are deleted afterwards, so
runs sharing one Redis never collide. Outages are real: ``throwaway_redis``
is a private redis-server the test may kill, freeze and restart;
``dead_redis_settings`` points at a port where nothing listens.

Rule: under CI (``CI=true``) a missing Redis or redis-server is a failure,
elsewhere a skip with the reason.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from mpim.config import RedisSettings
from mpim.redisconn import REDIS_ERRORS, redis_client
from tests.support.ports import free_port
from tests.support.redis_server import (
    REDIS_URL,
    TEST_SOCKET_TIMEOUT,
    ThrowawayRedis,
    delete_prefix,
    unavailable,
)


@pytest.fixture
def redis_prefix() -> str:
    return f"mpimtest:{uuid.uuid4().hex}:"


@pytest.fixture
async def redis_settings(redis_prefix: str) -> AsyncIterator[RedisSettings]:
    """Settings for the shared Redis with this test's own prefix; the test's
    keys are deleted afterwards."""
    settings = RedisSettings(
        url=REDIS_URL, key_prefix=redis_prefix, socket_timeout_seconds=TEST_SOCKET_TIMEOUT
    )
    client = redis_client(settings)
    try:
        try:
            await client.ping()
        except REDIS_ERRORS as exc:
            unavailable(f"Redis at {REDIS_URL} is unreachable: {exc}")
        yield settings
        await delete_prefix(client, redis_prefix)
    finally:
        await client.aclose()


@pytest.fixture
async def redis(redis_settings: RedisSettings) -> AsyncIterator[Redis]:
    """A client of the shared Redis, for looking at what the adapters wrote."""
    client = redis_client(redis_settings)
    yield client
    await client.aclose()


@pytest.fixture
def dead_redis_settings(redis_prefix: str) -> RedisSettings:
    """Settings for a port where nothing listens: every call is refused."""
    return RedisSettings(
        url=f"redis://127.0.0.1:{free_port()}/0",
        key_prefix=redis_prefix,
        socket_timeout_seconds=TEST_SOCKET_TIMEOUT,
    )


@pytest.fixture
async def throwaway_redis(tmp_path: Path) -> AsyncIterator[ThrowawayRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (needed to simulate outages)")
    server = ThrowawayRedis(binary, tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


@pytest.fixture
def mpim_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog at INFO for mpim's loggers, so outage and recovery lines are seen."""
    with caplog.at_level("INFO", logger="mpim"):
        yield caplog
