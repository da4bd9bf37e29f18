"""Bad input gets a clear 4xx page in the site's look, never a 500, and
nothing is stored."""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from extensions import db
from models import ConsentEvent, ConsentText, Lead, LeadStatus, OutboxMessage
from services.leads.subscriptions import preferences_token, unsubscribe_token
from tests.helpers import browser_headers, form_fields, signup, start_tags

ARTICLE = "/cspo-certification-benefits"
BROWSER = browser_headers(ARTICLE)


@pytest.fixture
def app_config(app_config):
    # Flask-WTF checks CSRF under TESTING too; say so rather than rely on it:
    # the public forms must work without a token while it is on.
    return {**app_config, "WTF_CSRF_ENABLED": True}


def stored(app) -> dict[str, int]:
    with app.app_context():
        return {
            m.__name__: db.session.scalar(select(func.count()).select_from(m))
            for m in (Lead, ConsentEvent, OutboxMessage, ConsentText)
        }


NOTHING = {"Lead": 0, "ConsentEvent": 0, "OutboxMessage": 0, "ConsentText": 0}


def assert_clear_4xx(response, status: int = 400) -> str:
    assert response.status_code == status
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert 'class="site-header"' in page
    assert 'class="site-footer"' in page
    assert re.search(r"<h1>[^<]+</h1>", page)
    assert "Traceback" not in page
    return page


def assert_accessible_errors(page: str) -> None:
    """Every invalid field names its error message, which exists on the page."""
    found = start_tags(page)
    ids = {a["id"] for _, a in found if "id" in a}
    invalid = [
        a
        for tag, a in found
        if a.get("aria-invalid") == "true" or (tag == "fieldset" and "has-error" in a["class"])
    ]
    assert invalid, "no field is marked invalid"
    for a in invalid:
        described = a.get("aria-describedby", "").split()
        assert described, f"{a.get('name')} has no aria-describedby"
        assert all(d in ids for d in described)
    for _, a in found:
        for ref in a.get("aria-describedby", "").split():
            assert ref in ids


def value_of(page: str, name: str) -> str:
    for tag, a in start_tags(page):
        if tag == "input" and a.get("name") == name and a.get("type") != "hidden":
            return a.get("value") or ""
    raise AssertionError(f"no input {name}")


def post_signup(client, headers=None, **overrides):
    """A real form from the article, with some fields replaced, sent as a
    browser sends it (Origin and Referer of the article)."""
    fields = form_fields(client.get(ARTICLE).get_data(as_text=True))
    fields.update(email="ann@example.com", topics=["newsletter"])
    fields.update(overrides)
    return client.post(
        "/subscribe", data=fields, headers=headers if headers is not None else BROWSER
    )


def fresh_fields(client) -> str:
    fields = form_fields(client.get(ARTICLE).get_data(as_text=True))
    return "&".join(f"{k}={quote(v)}" for k, v in fields.items())


# --- The signup form


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"email": ""}, "email", "Enter your email address."),
        ({"email": "   "}, "email", "Enter your email address."),
        ({"email": "not-an-email"}, "email", "doesn't look like an email address"),
        ({"email": "a" * 10_000 + "@example.com"}, "email", "characters"),
        ({"email": "ann\x00@example.com"}, "email", "characters no keyboard types"),
        ({"email": "ann@example.com\r\nBcc: x@evil.example"}, "email", "email address"),
        ({"name": "N" * 10_000}, "name", "100 characters"),
        ({"name": "Ann\r\nBcc: x@evil.example"}, "name", "letters, spaces"),
        ({"name": "Ann\nSmith"}, "name", "letters, spaces"),
        ({"name": "Ann\x00"}, "name", "letters, spaces"),
        ({"name": "Visit https://spam.example/win"}, "name", "web address or markup"),
        ({"name": "www.cheap-pills.example"}, "name", "web address or markup"),
        ({"name": "<b>Ann</b>"}, "name", "web address or markup"),
        ({"topics": []}, "topics", "Tick at least one"),
        ({"topics": ["no-such-topic"]}, "topics", "Tick at least one"),
    ],
    ids=[
        "empty-email",
        "blank-email",
        "not-an-email",
        "10k-email",
        "nul-in-email",
        "crlf-in-email",
        "10k-name",
        "crlf-in-name",
        "lf-in-name",
        "nul-in-name",
        "url-in-name",
        "www-in-name",
        "markup-in-name",
        "no-topics",
        "unknown-topic",
    ],
)
def test_invalid_signup_is_a_400_with_the_error_beside_the_field(
    app, client, overrides, field, message
):
    r = post_signup(client, **overrides)
    page = assert_clear_4xx(r)
    assert_accessible_errors(page)
    assert message in html.unescape(page)
    # The error is linked to its field.
    error_id = re.search(rf'id="({field}-inline-error)"', page)
    assert error_id, f"no error list for {field}"
    if field != "topics":
        # What the visitor typed is kept (NUL and CR/LF aside, it is shown as sent).
        shown = value_of(page, field)
        typed = overrides[field]
        assert shown == typed or shown == typed.replace("\r\n", "\n").replace("\x00", "\ufffd")
    assert stored(app) == NOTHING


def test_markup_in_the_name_is_escaped_when_shown_again(app, client):
    page = post_signup(client, name='<b onmouseover="x()">Ann</b>').get_data(as_text=True)
    assert "<b " not in page
    assert "&lt;b onmouseover=&#34;x()&#34;&gt;Ann&lt;/b&gt;" in page


def test_kept_input_can_be_corrected_and_sent_again(app, client):
    page = post_signup(client, email="ann@example", name="Ann").get_data(as_text=True)
    fields = form_fields(page)
    fields.update(email="ann@example.com", name=value_of(page, "name"), topics=["newsletter"])
    assert client.post("/subscribe", data=fields).status_code == 303
    assert stored(app)["Lead"] == 1


@pytest.mark.parametrize(
    "name", ["Ann-Marie O'Brien", "José Álvarez", "Dr. Zoë Smith", "李小龙"], ids=str
)
def test_ordinary_names_are_accepted(app, client, name):
    assert post_signup(client, name=name).status_code == 303
    with app.app_context():
        assert db.session.execute(select(Lead.name)).scalar_one() == name


def test_empty_body(app, client):
    r = client.post("/subscribe", data=b"", content_type="application/x-www-form-urlencoded")
    assert_clear_4xx(r)
    assert stored(app) == NOTHING


def test_form_with_only_its_hidden_fields(app, client):
    r = client.post(
        "/subscribe",
        data=fresh_fields(client),
        content_type="application/x-www-form-urlencoded",
    )
    page = assert_clear_4xx(r)
    assert_accessible_errors(page)
    assert "Enter your email address." in page
    assert stored(app) == NOTHING


def test_percent_encoded_non_utf8(app, client):
    body = fresh_fields(client) + "&email=%FF%FE%41@example.com&name=%C3%28&topics=newsletter"
    r = client.post("/subscribe", data=body, content_type="application/x-www-form-urlencoded")
    page = assert_clear_4xx(r)
    assert_accessible_errors(page)
    assert page.count("Some characters could not be read") == 2
    assert stored(app) == NOTHING


def test_raw_invalid_utf8_bytes(app, client):
    body = (
        fresh_fields(client).encode()
        + b"&email=\xff\xfe@example.com&name=\xc3\x28&topics=newsletter"
    )
    r = client.post(
        "/subscribe",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers=BROWSER,
    )
    # Werkzeug drops a body it cannot decode, hidden fields and all: the
    # visitor is told so, gets the form and a fresh time stamp, and filling
    # it in again works.
    page = assert_clear_4xx(r)
    assert_accessible_errors(page)
    assert "We could not read what was sent" in page
    assert stored(app) == NOTHING
    again = form_fields(page)
    assert again["placement"] == "page"
    again.update(email="ann@example.com", topics=["newsletter"])
    assert client.post("/subscribe", data=again, headers=BROWSER).status_code == 303
    assert stored(app)["Lead"] == 1


def test_invalid_utf8_in_a_multipart_form(app, client):
    fields = form_fields(client.get(ARTICLE).get_data(as_text=True))
    boundary = "b0undary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="email"\r\n\r\n'.encode()
        + b"\xff\xfe@example.com\r\n"
    )
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="topics"\r\n\r\n'.encode())
    parts.append(b"newsletter\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    r = client.post(
        "/subscribe", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    page = assert_clear_4xx(r)
    assert_accessible_errors(page)
    assert "Some characters could not be read" in page
    assert stored(app) == NOTHING


def test_nul_bytes_in_hidden_fields_are_harmless(app, client):
    r = post_signup(
        client,
        placement="inline\x00",
        source="cspo\x00",
        ref="https://x.example/\x00",
        utm_source="a\x00b",
    )
    # Hidden fields are cleaned, not shown as errors: the signup goes through.
    assert r.status_code == 303
    with app.app_context():
        lead = db.session.execute(select(Lead)).scalar_one()
        assert "\x00" not in (lead.utm_source or "") + (lead.referrer or "")
        assert lead.source_placement == "page"
        assert lead.source_slug is None


def test_a_100kb_body_is_refused_with_413(app, client):
    fields = form_fields(client.get(ARTICLE).get_data(as_text=True))
    fields.update(email="ann@example.com", topics=["newsletter"], name="x" * 100_000)
    r = client.post("/subscribe", data=fields)
    page = assert_clear_4xx(r, 413)
    assert "more data than any of our forms accepts" in page
    assert stored(app) == NOTHING


def test_a_100kb_multipart_body_is_refused_with_413(app, client):
    fields = form_fields(client.get(ARTICLE).get_data(as_text=True))
    fields.update(email="ann@example.com", topics=["newsletter"], name="x" * 100_000)
    r = client.post("/subscribe", data=fields, content_type="multipart/form-data")
    assert_clear_4xx(r, 413)
    assert stored(app) == NOTHING


# --- No CSRF token: the Origin check guards the signup instead


def test_a_signup_needs_no_token_and_no_cookie_from_our_own_pages(app):
    assert app.config["WTF_CSRF_ENABLED"] is True
    visitor = app.test_client(use_cookies=False)
    page = visitor.get(ARTICLE)
    assert "Set-Cookie" not in page.headers
    fields = form_fields(page.get_data(as_text=True))
    assert "csrf_token" not in fields
    fields.update(email="ann@example.com", name="Ann", topics=["newsletter"])
    r = visitor.post("/subscribe", data=fields, headers=BROWSER)
    assert r.status_code == 303
    assert "Set-Cookie" not in r.headers
    assert stored(app)["Lead"] == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://localhost"},
        {"Referer": f"http://localhost{ARTICLE}?utm_source=x"},  # no Origin: the Referer
        {},  # neither: no browser page sent it, the traps judge it
        {"Origin": "http://LOCALHOST:80"},  # the same origin, spelled otherwise
    ],
    ids=["origin", "referer-only", "neither", "same-origin-spelled-otherwise"],
)
def test_a_post_from_our_own_origin_is_accepted(app, client, headers):
    assert post_signup(client, headers=headers).status_code == 303
    assert stored(app)["Lead"] == 1


@pytest.mark.parametrize("token", ["", "forged-token", "x" * 5000])
def test_a_stray_csrf_token_field_changes_nothing(app, client, token):
    # Old pages in a cache, or a bot: the field is ignored, and a placement
    # that is not ours falls back to the signup page's.
    r = post_signup(client, csrf_token=token, placement='"><script>x()</script>')
    assert r.status_code == 303
    with app.app_context():
        assert db.session.execute(select(Lead.source_placement)).scalar_one() == "page"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "http://localhost.evil.example"},
        {"Origin": "https://localhost"},  # another scheme is another origin
        {"Origin": "http://localhost:8080"},
        {"Origin": "null"},  # a sandboxed frame, a file: page, a redirect
        {"Referer": f"https://evil.example{ARTICLE}"},  # no Origin: the Referer
        {"Origin": "https://evil.example", "Referer": f"http://localhost{ARTICLE}"},
    ],
    ids=["other-site", "lookalike", "https", "other-port", "null", "referer", "origin-wins"],
)
def test_a_post_from_another_origin_is_refused_and_stores_nothing(app, client, headers):
    r = post_signup(client, headers=headers, placement='"><script>x()</script>')
    page = assert_clear_4xx(r, 403)
    assert "This form was sent from another site" in page
    assert "Nothing was saved" in page
    assert "<script>" not in page
    assert stored(app) == NOTHING


# --- Tampered tokens in links


def _tampered_paths(token: str) -> list[str]:
    # A NUL or another control character is refused by the router, a 404
    # before any view (test_input_sweep.py); bytes that are not UTF-8 reach
    # the view and its "link does not work" page.
    return [
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        token[: len(token) // 2],
        "x" * 2000,
        "%FF%FE",
        "a.b.c",
    ]


@pytest.mark.parametrize(
    ("method", "prefix"),
    [
        ("get", "/confirm/"),
        ("post", "/confirm/"),
        ("get", "/preferences/"),
        ("post", "/preferences/"),
        ("get", "/unsubscribe/"),
        ("post", "/unsubscribe/"),
    ],
)
def test_tampered_tokens_get_a_friendly_400(app, client, method, prefix):
    # A real lead whose link has been damaged: nothing may change for it.
    assert signup(client, "ann@example.com").status_code == 303
    with app.app_context():
        lead = db.session.execute(select(Lead)).scalar_one()
        good = (preferences_token if "pref" in prefix else unsubscribe_token)(lead)
    before = stored(app)
    # A valid CSRF token (the preferences form has one; the confirm and
    # unsubscribe buttons need none), so it is the link that is judged.
    with app.app_context():
        page = client.get(f"/preferences/{preferences_token(lead)}").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', page)[1]
    for bad in _tampered_paths(good):
        data = {"csrf_token": csrf, "save": "1", "List-Unsubscribe": "One-Click"}
        r = getattr(client, method)(prefix + bad, data=data)
        page = assert_clear_4xx(r)
        assert "This link does not work" in page, bad
    assert stored(app) == before
    with app.app_context():
        assert db.session.execute(select(Lead.status)).scalar_one() == LeadStatus.PENDING


def test_resend_without_a_token(app, client):
    # No CSRF token either: the expired link's token is the capability.
    r = client.post("/confirm/resend", data={})
    page = assert_clear_4xx(r)
    assert "This link does not work" in page
    assert stored(app) == NOTHING


def test_wrong_method_is_a_friendly_405(app, client):
    r = client.put("/subscribe")
    assert_clear_4xx(r, 405)
