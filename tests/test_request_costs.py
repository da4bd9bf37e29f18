"""The cheaper per-request paths behave exactly like the library code they
stand in for: the same tokens, cookies, CSRF checks, limits and headers."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from flask import session
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import generate_csrf, validate_csrf
from itsdangerous import URLSafeTimedSerializer
from werkzeug.http import dump_cookie

from blueprints import subscriptions as signup_views
from blueprints.forms import csrf_token
from extensions import SweptMemoryStorage, limiter
from services import clock, tokens
from tests.conftest import form_fields, signup

ARTICLE = "/cspo-certification-benefits"
NOW = datetime(2026, 11, 25, 12, 0, 0, 250_000, tzinfo=UTC)


@pytest.fixture
def frozen(app):
    moments = [NOW]
    clock.set_clock(lambda: moments[0])
    return moments


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_fast_serializer_writes_itsdangerous_tokens_byte_for_byte(app):
    values = [secrets.token_hex(20), ["page", 1764072000.25], "ab" * 20, {"a": "b" * 300}]
    with mock.patch("time.time", return_value=1_800_000_000.5):
        for value in values:
            ours = tokens.fast_serializer(("old", "new"), "some-salt").dumps(value)
            theirs = URLSafeTimedSerializer(["old", "new"], salt="some-salt").dumps(value)
            if not theirs.startswith("."):  # not compressed by itsdangerous
                assert ours == theirs
            # Either way each side reads the other's tokens.
            assert URLSafeTimedSerializer(["new"], salt="some-salt").loads(ours) == value
            assert tokens.fast_serializer(("new",), "some-salt").loads(theirs) == value


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_purpose_tokens_are_those_itsdangerous_makes(app, frozen):
    with app.app_context():
        expected = URLSafeTimedSerializer(
            ["test-secret"], salt="leads.confirm", signer=tokens._ClockSigner
        ).dumps("abc")
        assert tokens.make("confirm", "abc") == expected
        value, issued = tokens.read("confirm", expected)
        assert value == "abc" and issued == NOW.replace(microsecond=0)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_csrf_token_is_the_one_flask_wtf_checks(app):
    with app.test_request_context("/"):
        token = csrf_token()
        validate_csrf(token)  # raises when Flask-WTF would refuse it
        assert generate_csrf() == token  # later callers in the request agree
        assert csrf_token() == token
        raw = session["csrf_token"]
    with app.test_request_context("/"):
        session["csrf_token"] = raw  # the same visitor, another page
        validate_csrf(csrf_token())
        assert session["csrf_token"] == raw


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_session_cookie_is_one_flask_reads_and_writes(app, client):
    r = client.get(ARTICLE)
    cookie = next(c for c in r.headers.getlist("Set-Cookie") if c.startswith("session="))
    value = cookie.split(";")[0].split("=", 1)[1]
    flask_serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    with app.app_context():
        data = flask_serializer.loads(value)
    assert "csrf_token" in data
    assert r.headers["Vary"] == "Cookie"
    # A cookie written by Flask's own interface is read by ours: the form
    # posted with it passes the CSRF check.
    with app.app_context():
        theirs = flask_serializer.dumps(data)
    client.set_cookie("session", theirs)
    fields = form_fields(r.get_data(as_text=True))
    fields.update(email="reader@example.com", name="", topics=["newsletter"])
    assert client.post("/subscribe", data=fields).status_code == 303


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "app_config",
    [{}, {"SESSION_COOKIE_DOMAIN": "example.com", "SESSION_COOKIE_PATH": "/x y"}],
    indirect=True,
)
def test_the_session_cookie_is_the_one_werkzeug_writes(app, client):
    cookie = next(
        c for c in client.get(ARTICLE).headers.getlist("Set-Cookie") if c.startswith("session=")
    )
    value = cookie.split(";")[0].split("=", 1)[1]
    si = app.session_interface
    expected = dump_cookie(
        "session",
        value,
        path=si.get_cookie_path(app),
        domain=si.get_cookie_domain(app),
        secure=si.get_cookie_secure(app),
        httponly=si.get_cookie_httponly(app),
        samesite=si.get_cookie_samesite(app),
        partitioned=si.get_cookie_partitioned(app),
    )
    assert cookie == expected


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_session_left_alone_sets_no_cookie(client):
    client.get(ARTICLE)  # the CSRF token is now in the session
    r = client.get(ARTICLE)
    assert not [c for c in r.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert r.headers["Vary"] == "Cookie"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_forms_shown_within_the_shared_window_carry_one_time_stamp(app, client, frozen):
    first = form_fields(client.get(ARTICLE).get_data(as_text=True))["started"]
    frozen[0] = NOW + timedelta(seconds=signup_views.FORM_TIME_SHARED_SECONDS / 2)
    assert form_fields(client.get(ARTICLE).get_data(as_text=True))["started"] == first
    frozen[0] = NOW + timedelta(seconds=signup_views.FORM_TIME_SHARED_SECONDS * 2)
    later = form_fields(client.get(ARTICLE).get_data(as_text=True))["started"]
    assert later != first
    with app.app_context():
        (_, shown_at), _ = tokens.read("form-time", later)
    assert shown_at == frozen[0].timestamp()
    frozen[0] = NOW - timedelta(seconds=1)  # a clock moved back: not the shared one
    assert form_fields(client.get(ARTICLE).get_data(as_text=True))["started"] != later


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_rate_limit_headers_only_where_a_limit_was_checked(client):
    page = client.get(ARTICLE)
    assert not [h for h in page.headers if h[0].startswith("X-RateLimit")]
    r = signup(client, "limited@example.com")
    assert r.status_code == 303
    assert r.headers["X-RateLimit-Limit"] == "1000"


@pytest.fixture
def app_config(app_config, request):
    return {**app_config, **getattr(request, "param", {})}


@pytest.fixture
def restore_default_limits():
    # Flask-Limiter keeps default limits on the (shared) extension object.
    saved = limiter.limit_manager._default_limits
    yield
    limiter.limit_manager.set_default_limits(saved)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("app_config", [{"RATELIMIT_DEFAULT": "2 per minute"}], indirect=True)
def test_default_limits_still_apply_to_every_route(restore_default_limits, client):
    # The before-request pass is skipped only when it has nothing to check.
    statuses = [client.get("/subscribe").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_view_keeps_its_own_value_of_a_security_header(app):
    app.add_url_rule(
        "/_test/framed", "framed", lambda: ("ok", 200, {"X-Frame-Options": "SAMEORIGIN"})
    )
    r = app.test_client().get("/_test/framed")
    assert r.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_swept_memory_storage_still_expires_counters():
    storage = SweptMemoryStorage("memory://")
    assert storage.incr("k", expiry=0.05) == 1
    assert storage.incr("k", expiry=0.05) == 2
    time.sleep(0.06)
    assert storage.get("k") == 0  # read after expiry: gone, sweep or not
    assert storage.incr("k", expiry=0.05) == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_limiter_uses_the_swept_storage_for_memory(app):
    assert type(limiter._storage) is SweptMemoryStorage


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_session_serializer_writes_and_reads_as_flask_does(app):
    from flask.sessions import session_json_serializer as flasks

    ours = app.session_interface.serializer
    values = [
        {"csrf_token": "abc", "_user_id": "1", "é": "ü"},
        {"_fresh": True, "_user_id": "7", "csrf_token": "x"},
        {" t": "looks like a tag"},
        {"_flashes": [("info", "Signed out")]},
        {"when": datetime(2026, 1, 1, tzinfo=UTC), "raw": b"\x00\xff"},
        {},
    ]
    with app.app_context():
        for value in values:
            assert ours.dumps(value) == flasks.dumps(value)
            assert ours.loads(flasks.dumps(value)) == flasks.loads(flasks.dumps(value))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_evidence_keeps_printable_user_agents_whole_and_cleans_the_rest(client, app):
    from blueprints.subscriptions import evidence

    for agent, kept in (("Mozilla/5.0 (X11) é", "Mozilla/5.0 (X11) é"), ("a\x00b\x07c", "abc")):
        with app.test_request_context("/", headers={"User-Agent": agent}):
            assert evidence().user_agent == kept
