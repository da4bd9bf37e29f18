"""Fixtures in the style of Flask's tutorial: app, client, runner; plus the
clock and the real components the suite runs against (PostgreSQL, Redis, an
SMTP server). Plain helpers are in tests/helpers.py and tests/factories.py."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from app import create_app
from extensions import db
from services import clock
from tests import procs
from tests.delivery_procs import Recorder, smtp_on_loopback
from tests.helpers import (
    PG_URL,
    REDIS_URL,
    T0,
    FrozenClock,
    base_config,
    port_open,
    require_service,
)

# --- PostgreSQL: a schema of its own per test session (and per test that
# starts from an empty database), so parallel runs never meet.


def _pg_schema() -> Iterator[str]:
    """procs.pg_schema, skipped where PostgreSQL is missing (failed under CI)."""
    if not port_open("127.0.0.1", 5432):
        require_service("PostgreSQL", "nothing listens on 127.0.0.1:5432")
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(procs.pg_schema(PG_URL))
        except Exception as exc:
            require_service("PostgreSQL", f"cannot create a schema in {PG_URL}: {exc}")
        yield url


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    yield from _pg_schema()


@pytest.fixture(scope="session")
def pg_schema_ready(pg_url) -> str:
    """pg_url with every table created; the app fixture empties them per test."""
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": pg_url})
    with app.app_context():
        db.create_all()
        db.engine.dispose()
    return pg_url


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """An empty schema for one test (migrations, real processes), dropped after."""
    yield from _pg_schema()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_db_url(request, tmp_path) -> str:
    """An empty database of the test's own, for `flask db upgrade` or a
    process that makes its tables: a new SQLite file, or fresh_pg_url."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    return request.getfixturevalue("fresh_pg_url")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """REDIS_URL, skipped where nothing listens on 127.0.0.1:6379."""
    if not port_open("127.0.0.1", 6379):
        require_service("Redis", "nothing listens on 127.0.0.1:6379")
    return REDIS_URL


# --- The app, on SQLite and on PostgreSQL.


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    """Every test that uses the app runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite3'}"
    return request.getfixturevalue("pg_schema_ready")


@pytest.fixture
def app_config(tmp_path, db_url) -> dict:
    """Override in a test module to change settings before the app is made."""
    return {**base_config(tmp_path), "SQLALCHEMY_DATABASE_URI": db_url}


@pytest.fixture
def app(app_config):
    app = create_app(app_config)
    with app.app_context():
        if app_config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
            db.create_all()
        else:
            _truncate_all()
    yield app
    clock.set_clock(None)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _truncate_all() -> None:
    tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
    db.session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    db.session.commit()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


# --- The clock.


@pytest.fixture
def frozen() -> Iterator[FrozenClock]:
    """services.clock held at T0 until the test moves it: frozen.set(moment),
    frozen.advance(seconds, **timedelta); frozen.now reads it."""
    held = FrozenClock(T0)
    clock.set_clock(held)
    yield held
    clock.set_clock(None)


# --- A real SMTP server on loopback.


@pytest.fixture
def smtp_server() -> Iterator[Recorder]:
    """aiosmtpd keeping every message (.messages); it can be told to refuse
    (.replies) or to hang (.hang_seconds). helpers.smtp_settings points the
    app at it."""
    with smtp_on_loopback(Recorder()) as recorder:
        yield recorder
