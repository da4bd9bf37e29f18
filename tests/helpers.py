"""Helpers the test modules share; the fixtures are in conftest.py.

A test module imports what it needs from here, never from conftest.py or
from another test module. Real processes (gunicorn, the worker, the Flask
CLI) are started with tests/procs.py; SMTP servers and bulk data for the
delivery tests are in tests/delivery_procs.py; Chromium in tests/e2e/chromium.py;
the forms and links of a page, as a browser would send them, in tests/page_forms.py.
"""

from __future__ import annotations

import contextlib
import functools
import http.cookiejar
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from extensions import db
from models import AuditEvent, Lead, OutboxMessage, OutboxStatus, Role, User
from services.delivery.rules import load_batch
from services.delivery.send import deliver
from services.delivery.worker import Worker
from services.leads import subscriptions
from services.staff import auth, sessions

# --- Services the suite runs against: skipped where missing, required under CI.

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def require_service(name: str, reason: str) -> None:
    """Skip with a reason on a machine without the service; fail under CI."""
    if IN_CI:
        pytest.fail(f"{name} is required under CI=true: {reason}")
    pytest.skip(f"{name} not available: {reason}")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# --- The clock: services.clock reads a FrozenClock while a test holds it.

# Where the `frozen` fixture starts the clock.
T0 = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


class FrozenClock:
    """A moment that moves only when the test says so. With `step` set, each
    read moves it on by that much afterwards (time passing during a request)."""

    def __init__(self, now: datetime = T0):
        self.now = now
        self.step = timedelta(0)

    def __call__(self) -> datetime:
        now = self.now
        self.now += self.step
        return now

    def set(self, moment: datetime) -> None:
        self.now = moment

    def advance(self, seconds: float = 0, **delta: float) -> None:
        self.now += timedelta(seconds=seconds, **delta)


# --- App settings.


def app_beside(env: dict, tmp_path: Path, **config):
    """The app in the test's process, on the database and key of the
    processes started with `env` (procs.app_env)."""
    from app import create_app

    return create_app(
        {
            **base_config(tmp_path),
            "SECRET_KEY": env["SECRET_KEY"],
            "SQLALCHEMY_DATABASE_URI": env["DATABASE_URL"],
            **config,
        }
    )


def base_config(tmp_path: Path) -> dict:
    """What every in-process app of the suite starts from (no database yet)."""
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


def smtp_settings(smtp) -> dict:
    """Settings that send mail to an SMTP server on loopback (the
    smtp_server fixture, or any recorder with a host and a port)."""
    return {"MAIL_BACKEND": "smtp", "MAIL_SERVER": smtp.host, "MAIL_PORT": smtp.port}


# --- Staff: accounts, sessions and the CSRF token of staff forms.

PASSWORD = "correct horse battery staple"
ADMIN_EMAIL = "admin@example.com"
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*?value="([^"]+)"')


@functools.cache
def _password_hash() -> str:
    # argon2id is slow on purpose: hash the test password once per run.
    return auth.hash_password(PASSWORD)


def add_user(app, email: str = "marketer@example.com", role: Role = Role.MARKETER) -> str:
    """A staff user with PASSWORD (same row create_user makes, hashed once),
    signed in once (a staff_session row); returns the id Flask-Login keeps
    in the session for it."""
    with app.app_context():
        user = User(email=email, password_hash=_password_hash(), role=Role(role))
        db.session.add(user)
        db.session.flush()
        sessions.start(user, "127.0.0.1", "tests")
        db.session.commit()
        return user.get_id()


def sign_in(client, user_id: str) -> None:
    """Put the user in the client's session without an argon2 round trip."""
    with client.session_transaction() as session:
        session["_user_id"] = user_id
        session["_fresh"] = True


def sign_in_as(app, client, role: Role = Role.MARKETER, email: str | None = None) -> str:
    user_id = add_user(app, email or f"{role.value}@example.com", role)
    sign_in(client, user_id)
    return user_id


def sign_in_admin(app, client, email: str = ADMIN_EMAIL) -> str:
    """An admin in the client's session (one argon2 hash per run, no login)."""
    return sign_in_as(app, client, Role.ADMIN, email)


def csrf_token(client, path: str = "/login") -> str:
    html = client.get(path).get_data(as_text=True)
    match = CSRF_FIELD.search(html)
    assert match, f"no csrf_token on {path}"
    return unescape(match.group(1))


def staff_login(client, email: str, password: str = PASSWORD):
    """Sign in through the login form (argon2 and all): the way to get a
    staff_session row with this client's user agent and address."""
    token = csrf_token(client)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def staff_browser(app, user_agent: str, ip: str = "192.0.2.1"):
    """A test client that says which browser and address it is."""
    client = app.test_client()
    client.environ_base.update(HTTP_USER_AGENT=user_agent, REMOTE_ADDR=ip)
    return client


def post_staff_form(client, path: str, data: dict | None = None, page: str = "/account/"):
    """Post to a staff route with the CSRF token read off `page`."""
    return client.post(path, data={"csrf_token": csrf_token(client, page), **(data or {})})


def mail_link(msg, path: str) -> str:
    """The local path of the first http://localhost/<path>/... link in a
    mail's text part."""
    text = msg.get_body(("plain",)).get_content()
    return re.search(rf"http://localhost(/{path}/[^\s]+)", text).group(1)


# --- Pages, and the signup form driven like a browser does.

_HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)"')
_FORM = re.compile(r'<form class="signup".*?</form>', re.S)
_FORM_TAG = re.compile(r"<form\b([^>]*)>")
_ATTR = re.compile(r'(\w+)="([^"]*)"')
# SITE_URL in the tests (base_config): the origin of every page the test client reads.
ORIGIN = "http://localhost"
ARTICLE_PATH = "/cspo-certification-benefits"


def page_text(response) -> str:
    return unescape(response.get_data(as_text=True))


def input_value(html: str, name: str) -> str | None:
    """The value of the <input name=...> on a page, whatever its attribute order."""
    for tag in re.findall(r"<input\b[^>]*>", html):
        if re.search(rf'\bname="{re.escape(name)}"', tag):
            found = re.search(r'\bvalue="([^"]*)"', tag)
            return unescape(found.group(1)) if found else ""
    return None


class _StartTags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def start_tags(html: str) -> list[tuple[str, dict]]:
    """(tag, attributes) of every start tag, as a browser's parser sees them."""
    parser = _StartTags()
    parser.feed(html)
    return parser.tags


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
    path: str = ARTICLE_PATH,
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


def confirm_address(app, client, email: str) -> None:
    """Click the confirmation link of a pending lead; it worked."""
    with app.app_context():
        token = subscriptions.confirm_token(subscriptions.lead_by_email(email))
    r = confirm(client, token)
    assert r.status_code == 200
    assert "You're in" in r.get_data(as_text=True)


# --- The lead browser, page by page.

# Its rows and its link to the next page (keyset pagination).
LEAD_ROW = re.compile(r'<td><a href="/marketing/leads/([^"/]+)">([^<]*)</a></td>')
NEXT_PAGE = re.compile(r'<a href="([^"]+)" rel="next">Next page</a>')
PER_PAGE = 50


def walk(client, url: str, max_pages: int = 20) -> tuple[list[str], int]:
    """Follow Next page links from url; (public ids in order, pages seen)."""
    seen: list[str] = []
    pages = 0
    while url:
        r = client.get(url)
        assert r.status_code == 200, f"{url}: {r.status_code}"
        html = r.get_data(as_text=True)
        rows = LEAD_ROW.findall(html)
        assert len(rows) <= PER_PAGE
        seen.extend(public_id for public_id, _ in rows)
        pages += 1
        assert pages <= max_pages, "the Next page links never end"
        match = NEXT_PAGE.search(html)
        url = unescape(match.group(1)) if match else None
        if url:
            assert len(rows) == PER_PAGE, "a Next page link under a part-filled page"
    return seen, pages


# --- A visitor's browser against a real server.


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Visitor:
    """One browser against a real server (procs.gunicorn): its own cookie
    jar, redirects not followed, the signup form of the article it read."""

    def __init__(self, base_url: str, forwarded_for: str | None = None):
        self.base_url = base_url
        self.cookies = http.cookiejar.CookieJar()
        self.forwarded_for = forwarded_for
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect()
        )
        self.fields: dict[str, str] = {}

    def _request(self, path: str, data: bytes | None = None) -> urllib.request.Request:
        headers = {"X-Forwarded-For": self.forwarded_for} if self.forwarded_for else {}
        if data is not None:  # as a browser posts a form from the article
            headers.update(Origin=self.base_url, Referer=self.base_url + ARTICLE_PATH)
        return urllib.request.Request(self.base_url + path, data=data, headers=headers)

    def read_article(self) -> None:
        with self.opener.open(self._request(ARTICLE_PATH), timeout=60) as r:
            self.fields = form_fields(r.read().decode())
        # The same page for everyone: a time stamp, no CSRF token, no cookie.
        assert self.fields.get("started")
        assert "csrf_token" not in self.fields
        assert not self.cookies

    def sign_up(self, email: str) -> int:
        data = urllib.parse.urlencode(
            {**self.fields, "email": email, "name": "", "topics": "cspo-classes"}
        ).encode()
        try:
            with self.opener.open(self._request("/subscribe", data), timeout=60) as r:
                return r.status
        except urllib.error.HTTPError as exc:  # a 303 lands here: redirects are not followed
            return exc.code
        except OSError:  # a dropped or timed-out connection
            return -1


# --- Rows in the database.


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


@contextlib.contextmanager
def statements(app) -> Iterator[list[str]]:
    """The SQL statements the app's engine runs inside the block (a page's
    query count: one per page, not one per row)."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def audit_actions(app, target: str | None = None) -> list[str]:
    """The audit trail's actions, oldest first; of one target when given."""
    stmt = select(AuditEvent.action).order_by(AuditEvent.id)
    if target is not None:
        stmt = stmt.where(AuditEvent.target == target)
    with app.app_context():
        return list(db.session.execute(stmt).scalars())


def the_lead(app, email: str) -> Lead:
    """The lead with that address, its topics loaded, detached from the session."""
    with app.app_context():
        lead = db.session.execute(select(Lead).where(Lead.email == email)).scalar_one()
        lead.topic_slugs  # noqa: B018 (load the topics before the session closes)
        db.session.expunge(lead)
        return lead


# --- The admin's forms: classes and announcements.


def class_form(token: str, **overrides) -> dict:
    """The admin's class form filled in; an override of None leaves a field out."""
    data = {
        "csrf_token": token,
        "title": "CSPO in Berlin",
        "course": "CSPO",
        "start_date": "2026-10-25",
        "start_time": "09:00",
        "end_date": "2026-10-25",
        "end_time": "17:00",
        "timezone": "Europe/Berlin",
        "location": "Alexanderplatz 1, Berlin",
        "trainer": "Dana Trainer",
        "price": "1290.00",
        "currency": "EUR",
        "seats": "12",
        "seats_taken": "3",
        "registration_url": "https://tickets.example.org/cspo-berlin",
        "status": "scheduled",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def announcement_form(token: str, **overrides) -> dict:
    data = {
        "csrf_token": token,
        "subject": "New CSPO dates",
        "body": "Hello {{ first_name or 'there' }},\n\nNew dates are out.\n\n"
        "[Unsubscribe]({{ unsubscribe_url }})",
        "topic": "cspo-classes",
        "training_class": "",
        "source_slug": "",
        "signed_up_from": "",
        "signed_up_until": "",
    }
    data.update(overrides)
    return data


def create_announcement(client, **overrides) -> str:
    """A draft written on the admin's form by a signed-in admin; its public id."""
    token = csrf_token(client, "/admin/announcements/new")
    r = client.post("/admin/announcements/new", data=announcement_form(token, **overrides))
    assert r.status_code == 303, page_text(r)
    match = re.fullmatch(r"/admin/announcements/([\w-]+)", r.headers["Location"])
    assert match, r.headers["Location"]
    return match.group(1)


# --- Mail.


def drain(app) -> dict[str, int]:
    """`flask worker --once` in-process: plan due work, send all that is due."""
    with app.app_context():
        total = Worker(app).run(once=True)
    return {"sent": total.sent, "skipped": total.skipped, "failed": total.failed}


def deliver_one(row_id: int, token: int, transport, stats) -> None:
    """One claimed row on its own (a batch of one), as a worker would send it."""
    with db.engine.connect() as conn:
        batch = load_batch(conn, [row_id])
        deliver(batch.rows[row_id], token, batch, transport, stats)


def received(smtp) -> dict[str, list]:
    """Messages the SMTP server accepted, by recipient address."""
    out: dict[str, list] = {}
    for _, rcpts, msg in smtp.messages:
        for rcpt in rcpts:
            out.setdefault(rcpt, []).append(msg)
    return out


def mail_files(app) -> list[Path]:
    """The .eml files the file backend wrote, by name."""
    return sorted(Path(app.config["MAIL_FILE_DIR"]).glob("*.eml"))


def mails_to_go(app, kind) -> int:
    """Mails of that kind that will go out (throttled submissions leave a
    row already skipped, so the delivery log shows them)."""
    return count(
        app, OutboxMessage, OutboxMessage.kind == kind, OutboxMessage.status != OutboxStatus.SKIPPED
    )
