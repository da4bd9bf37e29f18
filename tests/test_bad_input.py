"""Bad input gets a clear 4xx page in the site's look, never a 500, and
nothing is stored."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from extensions import db
from models import ConsentEvent, ConsentText, Lead, LeadStatus, OutboxMessage
from services.subscriptions import preferences_token, unsubscribe_token
from tests.conftest import form_fields, signup

ARTICLE = "/cspo-certification-benefits"


@pytest.fixture
def app_config(app_config):
    # Flask-WTF checks CSRF under TESTING too; say so rather than rely on it.
    return {**app_config, "WTF_CSRF_ENABLED": True}


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def elements(page: str) -> list[tuple[str, dict]]:
    parser = _Elements()
    parser.feed(page)
    return parser.elements


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
    found = elements(page)
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
    for tag, a in elements(page):
        if tag == "input" and a.get("name") == name and a.get("type") != "hidden":
            return a.get("value") or ""
    raise AssertionError(f"no input {name}")


def post_signup(client, **overrides):
    """A real form from the article, with some fields replaced."""
    fields = form_fields(client.get(ARTICLE).get_data(as_text=True))
    fields.update(email="ann@example.com", topics=["newsletter"])
    fields.update(overrides)
    return client.post("/subscribe", data=fields)


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
        ({"email": "ann\x00@example.com"}, "email", "email address"),
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
    r = client.post("/subscribe", data=body, content_type="application/x-www-form-urlencoded")
    page = assert_clear_4xx(r)
    # Werkzeug drops a body it cannot decode, token included: say what happened.
    assert "We could not read what was sent" in page
    assert stored(app) == NOTHING


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


# --- CSRF


def test_missing_csrf_token_keeps_the_input_and_offers_a_fresh_form(app, client):
    assert app.config["WTF_CSRF_ENABLED"] is True
    fields = form_fields(client.get(ARTICLE).get_data(as_text=True))
    del fields["csrf_token"]
    fields.update(email="ann@example.com", name="Ann", topics=["newsletter"])
    r = client.post("/subscribe", data=fields)
    page = assert_clear_4xx(r)
    assert 'role="alert"' in page
    assert value_of(page, "email") == "ann@example.com"
    assert value_of(page, "name") == "Ann"
    boxes = [a for _, a in elements(page) if a.get("type") == "checkbox"]
    ticked = [a["value"] for a in boxes if "checked" in a]
    assert ticked == ["newsletter"]
    assert stored(app) == NOTHING

    # The page it answers with carries a working token: sending it again works.
    again = form_fields(page)
    again.update(email=value_of(page, "email"), name=value_of(page, "name"), topics=["newsletter"])
    assert client.post("/subscribe", data=again).status_code == 303
    assert stored(app)["Lead"] == 1


@pytest.mark.parametrize("token", ["", "forged-token", "x" * 5000])
def test_wrong_csrf_token(app, client, token):
    r = post_signup(client, csrf_token=token, placement='"><script>x()</script>')
    page = assert_clear_4xx(r)
    assert "This form had expired" in page
    assert "<script>" not in page
    assert 'id="email-page"' in page
    assert stored(app) == NOTHING


def test_csrf_token_from_another_session(app, client):
    other = app.test_client()
    fields = form_fields(other.get(ARTICLE).get_data(as_text=True))
    client.get(ARTICLE)  # this visitor has a session of their own
    fields.update(email="ann@example.com", topics=["newsletter"])
    assert_clear_4xx(client.post("/subscribe", data=fields))
    assert stored(app) == NOTHING


# --- Tampered tokens in links


def _tampered_paths(token: str) -> list[str]:
    return [
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        token[: len(token) // 2],
        "x" * 2000,
        "%00%FF",
        "a.b.c",
    ]


@pytest.mark.parametrize(
    ("method", "prefix"),
    [
        ("get", "/confirm/"),
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
    # A valid CSRF token, so it is the link that is judged, not the form.
    csrf = form_fields(client.get(ARTICLE).get_data(as_text=True))["csrf_token"]
    for bad in _tampered_paths(good):
        data = {"csrf_token": csrf, "save": "1", "List-Unsubscribe": "One-Click"}
        r = getattr(client, method)(prefix + bad, data=data)
        page = assert_clear_4xx(r)
        assert "This link does not work" in page, bad
    assert stored(app) == before
    with app.app_context():
        assert db.session.execute(select(Lead.status)).scalar_one() == LeadStatus.PENDING


def test_resend_without_a_token(app, client):
    page = client.get("/subscribe").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
    r = client.post("/confirm/resend", data={"csrf_token": csrf})
    assert_clear_4xx(r)
    assert stored(app) == NOTHING


def test_wrong_method_is_a_friendly_405(app, client):
    r = client.put("/subscribe")
    assert_clear_4xx(r, 405)
