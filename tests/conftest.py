"""Fixtures in the style of Flask's tutorial: app, client, runner; plus the
real components the suite runs against (PostgreSQL, an SMTP server)."""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app import create_app
from extensions import db
from services import clock
from tests.helpers import T0, FrozenClock

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def require_service(name: str, reason: str) -> None:
    """Skip with a reason on a machine without the service; fail under CI."""
    if IN_CI:
        pytest.fail(f"{name} is required under CI=true: {reason}")
    pytest.skip(f"{name} not available: {reason}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# --- PostgreSQL: one schema per test session, so parallel runs never meet.


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    if not _port_open("127.0.0.1", 5432):
        require_service("PostgreSQL", "nothing listens on 127.0.0.1:5432")
    schema = f"t_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        require_service("PostgreSQL", f"cannot create a schema in {PG_URL}: {exc}")
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_schema_ready(pg_url) -> str:
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": pg_url})
    with app.app_context():
        db.create_all()
        db.engine.dispose()
    return pg_url


def base_config(tmp_path: Path) -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SITE_URL": "http://localhost",
        "MAIL_BACKEND": "file",
        "MAIL_FILE_DIR": str(tmp_path / "mail"),
        "FORM_MIN_SECONDS": 0,
        "SIGNUP_RATE_LIMIT": "1000 per minute",
        "RATELIMIT_STORAGE_URI": "memory://",
        "WORKER_POLL_SECONDS": 0.05,
        "WORKER_BACKOFF_BASE_SECONDS": 1,
        "MAIL_TIMEOUT": 5,
    }


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
def frozen() -> Iterator[FrozenClock]:
    """services.clock held at T0 until the test moves it: frozen.set(moment),
    frozen.advance(seconds, **timedelta); frozen.now reads it."""
    held = FrozenClock(T0)
    clock.set_clock(held)
    yield held
    clock.set_clock(None)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


# --- Helpers for driving the signup form like a browser does.

_HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)"')
_FORM = re.compile(r'<form class="signup".*?</form>', re.S)
_FORM_TAG = re.compile(r"<form\b([^>]*)>")
_ATTR = re.compile(r'(\w+)="([^"]*)"')
# SITE_URL in the tests (base_config): the origin of every page the test client reads.
ORIGIN = "http://localhost"


def form_fields(html: str, index: int = 0) -> dict[str, str]:
    """The hidden fields of the index-th signup form on a page."""
    forms = _FORM.findall(html)
    return dict(_HIDDEN.findall(forms[index]))


def browser_headers(path: str) -> dict[str, str]:
    """What a browser sends with a form posted from one of our pages: its
    Origin, and (Referrer-Policy strict-origin-when-cross-origin, same
    origin) the page's whole URL, query string and all."""
    return {"Origin": ORIGIN, "Referer": ORIGIN + path}


def signup(
    client,
    email: str,
    *,
    topics=("cspo-classes",),
    name: str = "",
    path: str = "/cspo-certification-benefits",
    index: int = 0,
    headers: dict[str, str] | None = None,
    **extra,
):
    """Read the page at `path` and send its index-th signup form, as a
    browser does (no cookie or CSRF token: the page is the same for all)."""
    page = client.get(path)
    fields = form_fields(page.get_data(as_text=True), index)
    fields.update(email=email, name=name, topics=list(topics), **extra)
    return client.post(
        "/subscribe", data=fields, headers={**browser_headers(path), **(headers or {})}
    )


def confirm(client, url_or_token: str, **kwargs):
    """Open a confirmation link and click its button, as a person does.

    GET /confirm/<token> changes nothing: it shows the address and one
    button, a form that posts to the same URL. The POST's response is
    returned; where the GET shows no button (a broken or expired link, an
    address confirmed already), the GET's page is returned: all a person
    could see. kwargs (headers, environ_base) go to both requests."""
    path = url_or_token.removeprefix(ORIGIN)
    if not path.startswith("/"):
        path = f"/confirm/{path}"
    page = client.get(path, **kwargs)
    forms = [dict(_ATTR.findall(attrs)) for attrs in _FORM_TAG.findall(page.get_data(as_text=True))]
    button = [f for f in forms if f.get("method") == "post" and f.get("action") == path]
    if page.status_code != 200 or not button:
        return page
    return client.post(path, **kwargs)


def mail_files(app) -> list[Path]:
    return sorted(Path(app.config["MAIL_FILE_DIR"]).glob("*.eml"))


# --- A real SMTP server on loopback.


class Recorder:
    """aiosmtpd handler that keeps every message and can be told to refuse."""

    def __init__(self):
        import threading

        self.messages: list = []
        self.lock = threading.Lock()
        # A list of SMTP replies for the next DATA commands ("421 ...", "550 ...");
        # when empty, every message is accepted with 250.
        self.replies: list[str] = []
        self.hang_seconds: float = 0

    async def handle_DATA(self, server, session, envelope):
        import asyncio
        from email import message_from_bytes, policy

        if self.hang_seconds:
            await asyncio.sleep(self.hang_seconds)
        with self.lock:
            if self.replies:
                reply = self.replies.pop(0)
                if not reply.startswith("250"):
                    return reply
            msg = message_from_bytes(envelope.content, policy=policy.default)
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    recorder.host, recorder.port = "127.0.0.1", port
    yield recorder
    controller.stop()
