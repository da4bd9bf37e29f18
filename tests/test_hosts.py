"""The Host header never reaches a redirect or a link: a request for a host
that is not SITE_URL's or in TRUSTED_HOSTS gets a 400 page in the site's
look, never a 500 and never a page from the public page cache. Behind a
trusted proxy, X-Forwarded-Host is held to the same list."""

from __future__ import annotations

import http.client

import pytest

from app import create_app
from tests import procs
from tests.helpers import ARTICLE_PATH, base_config


@pytest.fixture
def db_url(tmp_path) -> str:
    """Hosts do not depend on the database: SQLite only."""
    return f"sqlite:///{tmp_path / 'test.sqlite3'}"


EVIL = "evil.example"
# Each would redirect or link with the request's host: a 308 to add a
# slash, a 308 to merge slashes, the login redirect, a page full of links.
PATHS = ["/marketing", "/admin", "/static//x", "/marketing/leads", "/", ARTICLE_PATH, "/nope"]


def assert_refused(r) -> None:
    assert r.status_code == 400, r.status_code
    page = r.get_data(as_text=True)
    assert "Unknown site" in page
    assert 'class="site-header"' in page  # the site's look: the error page rendered
    assert EVIL not in page
    assert EVIL not in r.headers.get("Location", "")


@pytest.mark.parametrize("path", PATHS)
def test_a_request_for_another_host_is_a_400_page(client, path):
    assert_refused(client.get(path, headers={"Host": EVIL}))
    assert_refused(client.get(path, headers={"Host": f"{EVIL}:5000"}))


def test_posts_and_heads_for_another_host_are_refused_too(client):
    assert client.head(ARTICLE_PATH, headers={"Host": EVIL}).status_code == 400
    assert_refused(client.post("/subscribe", data={}, headers={"Host": EVIL}))
    assert_refused(client.post("/login", data={}, headers={"Host": EVIL}))


def test_the_public_page_cache_does_not_answer_another_host(client):
    assert client.get(ARTICLE_PATH).status_code == 200  # now in the cache
    assert_refused(client.get(ARTICLE_PATH, headers={"Host": EVIL}))
    assert client.get(ARTICLE_PATH).status_code == 200


def test_our_own_host_still_gets_its_redirects(client):
    r = client.get("/marketing")
    assert r.status_code == 308
    assert r.headers["Location"] in ("/marketing/", "http://localhost/marketing/")


@pytest.mark.parametrize("host", ["", "bad host", "exa mple.com:80", "[::1", "a" * 300])
def test_a_malformed_host_is_refused_without_a_500(client, host):
    r = client.get("/marketing", headers={"Host": host})
    assert r.status_code == 400


def test_a_forwarded_host_from_a_trusted_proxy_is_checked(app_config):
    app = create_app({**app_config, "TRUSTED_PROXY_COUNT": 1})
    client = app.test_client()
    for path in ("/marketing", "/admin", "/static//x", ARTICLE_PATH):
        assert_refused(client.get(path, headers={"X-Forwarded-Host": EVIL}))
    r = client.get("/marketing", headers={"X-Forwarded-Host": "localhost"})
    assert r.status_code == 308


def test_trusted_hosts_adds_names_and_subdomains(app_config):
    app = create_app({**app_config, "TRUSTED_HOSTS": ["www.example.org", ".example.net"]})
    client = app.test_client()
    for host in ("www.example.org", "example.net", "leads.example.net"):
        r = client.get("/marketing", headers={"Host": host})
        assert r.status_code == 308, host
        assert r.headers["Location"] in ("/marketing/", f"http://{host}/marketing/")
    assert_refused(client.get("/marketing", headers={"Host": EVIL}))
    assert_refused(client.get("/marketing", headers={"Host": "example.org"}))


def production(tmp_path, **settings):
    """An app as it runs outside tests (TESTING off: errors are pages)."""
    config = {**base_config(tmp_path), "TESTING": False, **settings}
    config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'prod.sqlite3'}"
    return create_app(config)


def test_in_production_only_site_urls_host_is_answered(tmp_path):
    app = production(tmp_path, SITE_URL="https://leads.example.com")
    client = app.test_client()
    r = client.get("/marketing", headers={"Host": "leads.example.com"})
    assert r.status_code == 308
    # Loopback is not this site's name: a health probe must use the real one
    # (or list the name it uses in TRUSTED_HOSTS).
    for host in ("localhost", "127.0.0.1:8000", EVIL):
        assert client.get("/marketing", headers={"Host": host}).status_code == 400, host


def test_run_on_this_machine_loopback_names_are_answered(tmp_path):
    # make run: SITE_URL is http://127.0.0.1:PORT; localhost reaches it too.
    app = production(tmp_path, SITE_URL="http://127.0.0.1:5000")
    client = app.test_client()
    for host in ("127.0.0.1:5000", "localhost:5000", "localhost"):
        assert client.get("/marketing", headers={"Host": host}).status_code == 308, host
    assert client.get("/marketing", headers={"Host": EVIL}).status_code == 400


def test_error_pages_still_render_for_our_own_host(client):
    r = client.get("/nope")
    assert r.status_code == 404
    assert 'class="site-header"' in r.get_data(as_text=True)
    r = client.get("/confirm/tampered")
    assert r.status_code == 400
    assert "This link does not work" in r.get_data(as_text=True)


@pytest.mark.slow
def test_gunicorn_behind_a_proxy_refuses_another_host(tmp_path):
    """As the attack run found it: gunicorn, one trusted proxy in front."""
    env = procs.app_env(tmp_path, f"sqlite:///{tmp_path / 'leads.sqlite3'}", TRUSTED_PROXY_COUNT=1)
    procs.flask(env, "db", "upgrade")
    with procs.gunicorn(env, workers=1) as server:
        for headers in ({"Host": EVIL}, {"X-Forwarded-Host": EVIL}):
            for path in ("/marketing", "/admin", "/static//x", ARTICLE_PATH):
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                conn.request("GET", path, headers=headers)
                r = conn.getresponse()
                body = r.read().decode()
                conn.close()
                assert r.status == 400, (headers, path, r.status)
                assert "Unknown site" in body
                assert EVIL not in (r.getheader("Location") or "") + body
