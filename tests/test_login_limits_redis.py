"""Login limits hold across processes: gunicorn with two workers sharing a
Redis rate-limit storage. Per account (whatever the address it comes from)
and per IP (whatever account it tries), for browsers that never signed in to
the account; a browser that did is limited on its own, so the owner still
gets in (device cookies: test_login_lockout).

The server trusts one proxy hop (TRUSTED_PROXY_COUNT=1), so each simulated
client can come from its own address with X-Forwarded-For.
"""

from __future__ import annotations

import http.cookiejar
import re
import socket
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from html import unescape
from urllib.parse import urlencode

import pytest

from tests import procs
from tests.helpers import REDIS_URL, require_service

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"
LIMIT = 5
ATTEMPTS = 20
# Its own database, flushed before and after: other tests use REDIS_URL's.
REDIS_DB_URL = REDIS_URL.rsplit("/", 1)[0] + "/14"
_CSRF = re.compile(r'name="csrf_token"[^>]*?value="([^"]+)"')


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _redis():
    try:
        import redis
    except ImportError:
        require_service("Redis", "the redis package is not installed")
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            pass
    except OSError:
        require_service("Redis", "nothing listens on 127.0.0.1:6379")
    return redis.Redis.from_url(REDIS_DB_URL, socket_timeout=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = _redis()
    store.flushdb()
    tmp = tmp_path_factory.mktemp("login-limits")
    env = procs.app_env(
        tmp,
        f"sqlite:///{tmp / 'leads.sqlite3'}",
        RATELIMIT_STORAGE_URI=REDIS_DB_URL,
        LOGIN_RATE_LIMIT=f"{LIMIT} per minute",
        TRUSTED_PROXY_COUNT=1,
    )
    procs.flask_db_upgrade(env)
    for email in ("target@example.com", "other@example.com", "owner@example.com"):
        procs.flask(env, "users", "create", email, "--role", "marketer", "--password", PASSWORD)
    log_args = ["--access-logfile", "-", "--access-logformat", "pid=%(p)s %(m)s %(U)s %(s)s"]
    try:
        with procs.gunicorn(env, workers=2, extra_args=log_args) as srv:
            srv.redis = store
            yield srv
    finally:
        store.flushdb()
        store.close()


def attempt(
    server, email: str, password: str, ip: str, jar: http.cookiejar.CookieJar | None = None
) -> int:
    """One client: its own cookies (a new browser unless `jar` is given), its
    own CSRF token, new connections."""
    jar = http.cookiejar.CookieJar() if jar is None else jar
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect)
    headers = {"X-Forwarded-For": ip, "User-Agent": "limits-test"}
    with opener.open(
        urllib.request.Request(server.url + "/login", headers=headers), timeout=30
    ) as r:
        token = unescape(_CSRF.search(r.read().decode()).group(1))
    body = urlencode({"email": email, "password": password, "csrf_token": token}).encode()
    request = urllib.request.Request(server.url + "/login", data=body, headers=headers)
    try:
        with opener.open(request, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code


def burst(server, calls: list[tuple[str, str, str]]) -> Counter:
    """Run the attempts four at a time, so both workers serve them."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        codes = list(pool.map(lambda c: attempt(server, *c), calls))
    return Counter(codes)


def login_pids(server) -> set[str]:
    return set(re.findall(r"pid=<?(\d+)>? POST /login", server.log(tail=200_000)))


def test_per_account_limit_holds_across_workers(server):
    wrong = [("target@example.com", "wrong password!", f"10.1.0.{i}") for i in range(ATTEMPTS)]
    codes = burst(server, wrong)
    assert codes == Counter({401: LIMIT, 429: ATTEMPTS - LIMIT}), codes
    assert len(login_pids(server)) == 2, "both gunicorn workers served sign-ins"
    # Limited: even the right password, from an address never seen before.
    assert attempt(server, "target@example.com", PASSWORD, "10.1.1.1") == 429
    # Another account is not.
    assert attempt(server, "other@example.com", PASSWORD, "10.1.1.2") == 303
    keys = [k.decode() for k in server.redis.keys("*")]
    assert any("login-account:target@example.com" in k for k in keys), keys


def test_per_ip_limit_holds_across_workers(server):
    ip = "10.2.0.1"
    wrong = [(f"nobody{i}@example.com", "wrong password!", ip) for i in range(ATTEMPTS)]
    codes = burst(server, wrong)
    assert codes == Counter({401: LIMIT, 429: ATTEMPTS - LIMIT}), codes
    assert attempt(server, "other@example.com", PASSWORD, ip) == 429
    assert attempt(server, "other@example.com", PASSWORD, "10.2.0.2") == 303


def test_a_browser_that_signed_in_before_gets_in_during_an_attack(server):
    browser = http.cookiejar.CookieJar()
    assert attempt(server, "owner@example.com", PASSWORD, "10.3.0.1", browser) == 303
    # Closed and opened again: the session cookie is gone, the device cookie stays.
    browser.clear_session_cookies()
    assert [c.name for c in browser] == ["login_device"]
    wrong = [("owner@example.com", "wrong password!", f"10.3.1.{i}") for i in range(ATTEMPTS)]
    codes = burst(server, wrong)
    assert codes[429] >= ATTEMPTS - LIMIT, codes
    assert attempt(server, "owner@example.com", PASSWORD, "10.3.2.1") == 429  # a new browser
    assert attempt(server, "owner@example.com", PASSWORD, "10.3.2.2", browser) == 303
