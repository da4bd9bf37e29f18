"""200 signups at once against gunicorn with 2 workers, on SQLite and PostgreSQL.

A fifth of them are case or whitespace spellings of other addresses in the same
burst: they must land on the same lead, with no 5xx and one confirmation mail.
"""

from __future__ import annotations

import http.cookiejar
import random
import re
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, text

from tests import procs

pytestmark = pytest.mark.slow

ARTICLE = "/cspo-certification-benefits"
DISTINCT = 160
VARIANTS = 40
THREADS = 40

_FORM = re.compile(r'<form class="signup".*?</form>', re.S)
_HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)"')


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Visitor:
    """One browser: its own cookie jar, the form it was shown."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect()
        )
        self.fields: dict[str, str] = {}

    def read_article(self) -> None:
        with self.opener.open(self.base_url + ARTICLE, timeout=30) as r:
            html = r.read().decode()
        self.fields = dict(_HIDDEN.findall(_FORM.findall(html)[0]))
        # The same page for everyone: a time stamp, no CSRF token, no cookie.
        assert self.fields.get("started")
        assert "csrf_token" not in self.fields
        assert not self.cookies

    def sign_up(self, email: str) -> int:
        data = urllib.parse.urlencode(
            {**self.fields, "email": email, "name": "", "topics": "cspo-classes"}
        ).encode()
        # As a browser posts a form from the article: its Origin and its URL.
        headers = {"Origin": self.base_url, "Referer": self.base_url + ARTICLE}
        request = urllib.request.Request(self.base_url + "/subscribe", data=data, headers=headers)
        try:
            with self.opener.open(request, timeout=60) as r:
                return r.status
        except urllib.error.HTTPError as exc:  # 303 lands here: redirects are not followed
            return exc.code
        except OSError:  # a dropped or timed-out connection
            return -1


def _spellings() -> tuple[list[str], set[str]]:
    """160 addresses plus 40 other spellings of some of them, shuffled."""
    distinct = [f"lead{i:03d}@example.com" for i in range(DISTINCT)]
    rng = random.Random(2024)
    variants = []
    for i, addr in enumerate(rng.sample(distinct, VARIANTS)):
        local, domain = addr.split("@")
        variants.append(
            [
                addr.upper(),
                f"  {addr}  ",
                f"{local.capitalize()}@{domain.upper()}",
                f"\t{addr.title()} ",
            ][i % 4]
        )
    burst = distinct + variants
    rng.shuffle(burst)
    return burst, set(distinct)


def _burst(base_url: str) -> list[int]:
    burst, _ = _spellings()
    visitors = [Visitor(base_url) for _ in burst]
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(Visitor.read_article, visitors))
        return list(pool.map(Visitor.sign_up, visitors, burst))


def _check_rows(database_url: str) -> None:
    _, expected = _spellings()
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            emails = conn.execute(text("SELECT email FROM lead")).scalars().all()
            confirmations = conn.execute(
                text(
                    "SELECT lead_id, count(*) FROM outbox_message "
                    "WHERE kind = 'confirmation' AND status <> 'skipped' GROUP BY lead_id"
                )
            ).all()
    finally:
        engine.dispose()
    assert len(emails) == DISTINCT
    assert set(emails) == expected
    assert len(confirmations) == DISTINCT, "a lead without a confirmation mail"
    assert all(n == 1 for _, n in confirmations), "more than one confirmation for a lead"


def _run(tmp_path, database_url: str) -> None:
    env = procs.app_env(
        tmp_path,
        database_url,
        FORM_MIN_SECONDS=0,
        SIGNUP_RATE_LIMIT="100000 per minute",
    )
    procs.flask_db_upgrade(env)
    with procs.gunicorn(env, workers=2) as server:
        statuses = _burst(server.url)
        log = server.log(tail=1_000_000)
    counts = {s: statuses.count(s) for s in set(statuses)}
    assert counts == {303: DISTINCT + VARIANTS}, (
        f"statuses {counts}\n--- gunicorn log\n{log[-4000:]}"
    )
    assert "Traceback" not in log, log[-4000:]
    _check_rows(database_url)


def test_concurrent_signups_sqlite(tmp_path):
    _run(tmp_path, f"sqlite:///{tmp_path / 'leads.sqlite3'}")


@pytest.mark.postgres
def test_concurrent_signups_postgresql(tmp_path, fresh_pg_url):
    _run(tmp_path, fresh_pg_url)
