"""Fixtures shared by the whole suite: the real PostgreSQL + PostGIS, and stores.

``postgres_url`` creates a throwaway database for the test session on the local
server (``CITYOS_TEST_POSTGRES_ADMIN_URL``, default
``postgresql://postgres@127.0.0.1:5432/postgres``) and drops it at the end. A server
that is down, or one without PostGIS, FAILS the tests that need it: CI must run the
PostgreSQL tests, and ``make test`` (``scripts/ensure-services.sh``) starts the server
and installs PostGIS first.

``clock`` pins the process clock (:mod:`cityos.core.clock`) to :data:`PINNED_INSTANT`
for one test and gives the :class:`~cityos.core.clock.FixedClock` to move it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from cityos.core.clock import FixedClock, use_clock

# a Monday 07:30 in the demo city (Asia/Kuala_Lumpur, UTC+8): buses are out
PINNED_INSTANT = datetime(2026, 12, 7, 7, 30, tzinfo=ZoneInfo("Asia/Kuala_Lumpur"))

ADMIN_URL = os.environ.get("CITYOS_TEST_POSTGRES_ADMIN_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
_HOW_TO_FIX = "run scripts/ensure-services.sh (make test does) to start it and install PostGIS"


def _database_url(admin_url: str, name: str) -> str:
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of an empty PostGIS-enabled database that lives for the test session."""
    import psycopg

    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.Error as error:
        pytest.fail(f"PostgreSQL is not reachable at {ADMIN_URL}: {error}; {_HOW_TO_FIX}",
                    pytrace=False)
    name = f"cityos_test_{secrets.token_hex(4)}"
    url = _database_url(ADMIN_URL, name)
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        except psycopg.Error as error:
            pytest.fail(f"PostGIS is not available on {ADMIN_URL}: {error}; {_HOW_TO_FIX}",
                        pytrace=False)
        yield url
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def truncate_postgres(url: str) -> None:
    """Empty every CityOS table of the database at ``url`` (PostGIS's own excepted)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'spatial_ref_sys'")]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    """A fresh, empty context store, once per backend (SQLite file, PostgreSQL)."""
    if request.param == "sqlite":
        from cityos.core.store.sqlite import SqliteStore

        opened = SqliteStore(str(tmp_path / "store.db"))
    else:
        from cityos.core.store.postgres import PostgresStore

        url = request.getfixturevalue("postgres_url")
        opened = PostgresStore(url)  # creates the schema on first use
        truncate_postgres(url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def sqlite_store(tmp_path):
    """A fresh SQLite store in a file under ``tmp_path``."""
    from cityos.core.store.sqlite import SqliteStore

    opened = SqliteStore(str(tmp_path / "store.db"))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def clock() -> Iterator[FixedClock]:
    """The process clock, standing still at :data:`PINNED_INSTANT` for this test."""
    with use_clock(FixedClock(PINNED_INSTANT)) as fixed:
        yield fixed


# Modules whose answers involve "now" (live boards, predictions, sessions, replays):
# .ci/clock-matrix runs `pytest -m clock` under several fixed machine clocks and zones.
CLOCK_SENSITIVE_MODULES = (
    "tests/core/test_clock.py",
    "tests/web/test_display_tokens.py",
    "tests/apps/transit/test_live.py",
    "tests/apps/transit/test_gtfs_rt_live.py",
    "tests/apps/transit/test_sim_days.py",
    "tests/apps/transit/test_clock_service_day.py",
    "tests/e2e/test_transit_browser.py",
    "tests/e2e/test_dashboard_browser.py",
    "tests/e2e/test_flood_browser.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    """Mark the tests of :data:`CLOCK_SENSITIVE_MODULES` ``clock``."""
    root = config.rootpath
    for item in items:
        try:
            where = item.path.relative_to(root).as_posix()
        except ValueError:
            continue
        if where in CLOCK_SENSITIVE_MODULES:
            item.add_marker(pytest.mark.clock)
