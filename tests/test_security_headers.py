"""Security headers on every response, errors included; no cookie for
anonymous visitors, cookie flags where there is one; SECRET_KEY."""

from __future__ import annotations

import pytest

from app import create_app
from services.content import TRAINING_PATH
from services.leads import subscriptions
from tests.factories import subscribed_lead
from tests.helpers import browser_headers, form_fields, signup

ARTICLE = "/cspo-certification-benefits"


@pytest.fixture
def settings() -> dict:
    return {}


@pytest.fixture
def app_config(app_config, settings):
    return {**app_config, "SIGNUP_RATE_LIMIT": "1 per minute", **settings}


@pytest.fixture
def app_with_boom(app):
    def boom():
        raise RuntimeError("a bug in a view")

    app.add_url_rule("/_test/boom", "boom", boom)
    return app


def csp_directives(value: str) -> dict[str, list[str]]:
    out = {}
    for part in value.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def responses(app, client) -> dict[int, object]:
    got = {
        200: client.get(ARTICLE),
        404: client.get("/no-such-page"),
        400: client.get("/confirm/tampered"),
        405: client.delete(ARTICLE),
        500: client.get("/_test/boom"),
    }
    assert signup(client, "a@example.com").status_code == 303
    got[429] = signup(client, "b@example.com")
    got[413] = client.post(
        "/subscribe", data=b"x" * 100_000, content_type="application/x-www-form-urlencoded"
    )
    return got


def test_every_response_carries_the_security_headers(app_with_boom):
    app = app_with_boom
    got = responses(app, app.test_client())
    assert {status: r.status_code for status, r in got.items()} == {s: s for s in got}
    for status, r in got.items():
        h = r.headers
        csp = csp_directives(h.get("Content-Security-Policy", ""))
        assert csp, f"{status}: no CSP"
        script_src = csp.get("script-src", csp.get("default-src"))
        assert "'unsafe-inline'" not in script_src, status
        assert "'unsafe-eval'" not in script_src, status
        assert csp["object-src"] == ["'none'"], status
        assert csp["base-uri"] == ["'none'"], status
        assert csp["frame-ancestors"] == ["'none'"], status
        assert csp["form-action"] == ["'self'"], status
        assert h["X-Content-Type-Options"] == "nosniff", status
        assert h["Referrer-Policy"] == "strict-origin-when-cross-origin", status
        assert "Strict-Transport-Security" not in h  # http SITE_URL
        assert r.mimetype == "text/html", status
        page = r.get_data(as_text=True)
        assert 'class="site-header"' in page, status
        assert "Traceback" not in page and "RuntimeError" not in page, status


def test_pages_have_no_inline_script_or_style_attributes(client):
    for path in ("/", ARTICLE, "/certified-scrum-product-owner-cspo-training", "/nope"):
        page = client.get(path).get_data(as_text=True)
        assert "<script>" not in page
        assert " onclick=" not in page and " onload=" not in page
        assert " style=" not in page


def test_the_500_page_is_logged_and_friendly(app_with_boom, caplog):
    r = app_with_boom.test_client().get("/_test/boom")
    assert r.status_code == 500
    assert "Something went wrong on our side" in r.get_data(as_text=True)
    assert any("a bug in a view" in str(rec.exc_info) for rec in caplog.records)


def test_anonymous_visitors_get_no_cookie_anywhere_on_the_public_side(app, client):
    """No session cookie, CSRF token or per-visit value for readers, from the
    first page to the confirmed subscription (README, "How the public pages
    and the signup form work")."""
    with app.app_context():
        lead = subscribed_lead("lead@example.com")
        confirm_link = f"/confirm/{subscriptions.confirm_token(lead)}"
        unsubscribe_link = f"/unsubscribe/{subscriptions.unsubscribe_token(lead)}"
    fields = form_fields(client.get(ARTICLE).get_data(as_text=True))
    fields.update(email="ann@example.com", topics=["newsletter"])
    got = {
        "GET /": client.get("/"),
        "GET article": client.get(ARTICLE + "?utm_source=x"),
        "HEAD article": client.head(ARTICLE),
        "GET training": client.get(TRAINING_PATH),
        "GET /subscribe": client.get("/subscribe"),
        "GET /embed/signup": client.get("/embed/signup"),
        "POST /subscribe": client.post("/subscribe", data=fields, headers=browser_headers(ARTICLE)),
        "POST /subscribe, invalid": client.post("/subscribe", data={**fields, "email": "x"}),
        "GET thanks": client.get("/subscribe/thanks"),
        "GET confirm": client.get(confirm_link),
        "POST confirm": client.post(confirm_link),
        "GET confirmed": client.get(confirm_link),
        "GET unsubscribe": client.get(unsubscribe_link),
        "GET 404": client.get("/no-such-page"),
    }
    for label, r in got.items():
        assert r.status_code < 500, label
        assert "Set-Cookie" not in r.headers, (label, r.headers.getlist("Set-Cookie"))
        assert "csrf_token" not in r.get_data(as_text=True), label
    assert "You're in" in got["POST confirm"].get_data(as_text=True)
    # Cached public pages name the cookie they vary on (staff see another page).
    assert "Cookie" in got["GET article"].headers["Vary"]


def session_cookie(response) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert len(cookies) == 1, response.headers.getlist("Set-Cookie")
    return cookies[0]


def test_session_cookie_is_httponly_and_samesite_lax(client):
    cookie = session_cookie(client.get("/login"))  # the login form's CSRF token
    attrs = {a.strip().split("=")[0].lower(): a for a in cookie.split(";")[1:]}
    assert "httponly" in attrs
    assert attrs["samesite"].strip() == "SameSite=Lax"
    assert "secure" not in attrs  # http SITE_URL: the cookie must still work locally


@pytest.fixture
def https_site(monkeypatch):
    # As in production: settings come from the environment.
    monkeypatch.setenv("SITE_URL", "https://www.scrum-academy.example")
    return {"SITE_URL": "https://www.scrum-academy.example"}


@pytest.mark.parametrize("settings", [{"SITE_URL": "https://www.scrum-academy.example"}])
def test_https_site_gets_secure_cookie_and_hsts(https_site, app, client):
    r = client.get("/login")
    cookie = session_cookie(r)
    assert "Secure" in [a.strip() for a in cookie.split(";")]
    assert "HttpOnly" in cookie
    hsts = r.headers["Strict-Transport-Security"]
    assert "max-age=31536000" in hsts
    assert client.get("/nope").headers["Strict-Transport-Security"] == hsts
    assert client.get(ARTICLE).headers["Strict-Transport-Security"] == hsts


def test_secret_key_is_required_outside_debug_and_testing(monkeypatch, tmp_path):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    db = {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.sqlite3'}"}
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(db)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({**db, "SECRET_KEY": ""})


def test_secret_key_from_the_environment_is_used(monkeypatch, tmp_path):
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.sqlite3'}"})
    assert app.secret_key == "from-the-environment"
    assert not app.testing


def test_testing_without_secret_key_gets_a_throwaway_one(monkeypatch, tmp_path):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    app = create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.sqlite3'}"}
    )
    assert app.secret_key
