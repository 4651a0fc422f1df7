"""Real database servers for tests: a fresh database per test, dropped after.

In CI (CI=true) an unreachable server fails the test; elsewhere it skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from mpim.store.database import drop_database

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

MYSQL_SERVER = os.environ.get("MPIM_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306")
POSTGRES_SERVER = os.environ.get(
    "MPIM_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432"
)


def unavailable(what: str, exc: Exception) -> None:
    message = f"{what} unreachable: {exc}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _server_admin_url(server: str) -> str:
    return server + ("/postgres" if server.startswith("postgresql") else "/")


@pytest.fixture
def mysql_url() -> Iterator[str]:
    yield from _fresh_database(MYSQL_SERVER, "?charset=utf8mb4")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _fresh_database(POSTGRES_SERVER, "")


@pytest.fixture(scope="session")
def shared_mysql_url() -> Iterator[str]:
    """One MariaDB database for the session's clusters; ``empty_database``
    truncates it before each, which is far cheaper than creating one."""
    from mpim.store.database import ensure_database

    for url in _fresh_database(MYSQL_SERVER, "?charset=utf8mb4"):
        ensure_database(url)
        yield url


def empty_database(url: str) -> None:
    """Delete every row (keep the schema and its version) if the schema exists.

    DELETE, not TRUNCATE: on these small tables it is several times faster.
    """
    from mpim.store import schema

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            existing = set(inspect(conn).get_table_names())
            for table in schema.metadata.sorted_tables:
                if table.name in existing and table is not schema.schema_version:
                    conn.execute(table.delete())
    finally:
        engine.dispose()


def _fresh_database(server: str, query: str) -> Iterator[str]:
    name = f"mpimtest_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_server_admin_url(server), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        unavailable(make_url(server).get_backend_name(), exc)
    finally:
        admin.dispose()
    url = f"{server}/{name}{query}"
    try:
        yield url
    finally:
        drop_database(url)
