"""``--fresh-store``: the benchmark cluster's database is dropped, on a real server."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from mpim.store.database import drop_database, ensure_database
from tests.support.databases import mysql_url, postgres_url  # noqa: F401 (fixtures)


@pytest.mark.parametrize("fixture", ["mysql_url", "postgres_url"])
def test_the_store_database_and_its_rows_are_gone(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(fixture)
    ensure_database(url)  # as the cluster's nodes create it
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE earlier_run (n INT)"))
        conn.execute(text("INSERT INTO earlier_run VALUES (1)"))
    engine.dispose()
    drop_database(url)
    engine = create_engine(url)
    try:
        with pytest.raises((OperationalError, ProgrammingError)), engine.connect():
            pass  # the database itself no longer exists
    finally:
        engine.dispose()
    drop_database(url)  # already gone: nothing to do, no error


def test_only_server_databases_with_plain_names_are_dropped() -> None:
    with pytest.raises(ValueError, match="MySQL/MariaDB or PostgreSQL"):
        drop_database("sqlite:////tmp/some.sqlite3")
    with pytest.raises(ValueError, match="letters, digits"):
        drop_database("mysql+pymysql://root@127.0.0.1:3306/odd-name`x")
