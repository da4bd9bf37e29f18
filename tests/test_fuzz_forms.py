"""Hypothesis against every public form and token route: arbitrary text, huge
bodies, invalid UTF-8, NULs, CR/LF, JSON, multipart, text/plain and garbage
content types, hostile headers and query strings.

Whatever arrives, the answer is never a 5xx, a request that is refused
(4xx) leaves every table as it was, and a GET or HEAD changes nothing. Runs
in-process on SQLite (Flask test client) for speed: a few thousand examples
in well under a minute. The headers that only PostgreSQL chokes on have
their own test on both backends.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
from collections import Counter
from urllib.parse import quote, unquote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from app import create_app
from extensions import db
from models import Lead, LeadStatus, Role, User
from services.leads import signup, subscriptions
from services.staff import sessions
from services.staff.auth import hash_password
from tests.helpers import (
    ORIGIN,
    announcement_form,
    base_config,
    browser_headers,
    class_form,
    form_fields,
    sign_in,
)

ARTICLE = "/cspo-certification-benefits"
EXAMPLES = 300
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis/ folder; a failure prints its example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- Values that have broken web forms before.

NASTY = [
    "\x00",
    "\r\n",
    "\n",
    "\r",
    "\t",
    "\x0b\x0c",
    "\x7f",
    "\u2028",
    "\u2029",
    "\ufffd",
    "\ufeff",
    "\u202e",
    "%00",
    "%FF%FE",
    "%C3%28",
    "&#0;",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "' OR '1'='1' --",
    "{{7*7}}{% raw %}",
    "${jndi:ldap://x}",
    '=HYPERLINK("http://evil.example")',
    "x\r\nBcc: evil@example.com",
    "../../../../etc/passwd",
    "🙂" * 30,
    "\U0010ffff",
    "a" * 600,
    "ann@example.com",
    "ANN@EXAMPLE.COM ",
    "newsletter",
    "cspo-classes",
    "One-Click",
    "1",
    "",
]
nasty = st.sampled_from(NASTY)
values = st.one_of(
    st.text(max_size=40),
    nasty,
    st.tuples(st.text(max_size=12), nasty, st.text(max_size=12)).map("".join),
)
# Header values travel as Latin-1 and may not hold CR or LF (every server
# refuses those before the app sees them).
header_values = st.text(
    alphabet=st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=200
)

# The public forms carry no CSRF token (a stray one is fuzzed like any name).
SIGNUP_NAMES = [
    "email",
    "name",
    "topics",
    "placement",
    "source",
    "started",
    "ref",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "nickname",
    "submit",
]
PREFERENCE_NAMES = ["csrf_token", "topics", "save", "unsubscribe_all", "List-Unsubscribe"]
LOGIN_NAMES = ["csrf_token", "email", "password", "submit", "next"]
RESEND_NAMES = ["token", "submit"]
CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=utf-16",
    "application/x-www-form-urlencoded; charset=no-such-charset",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    'multipart/form-data; boundary="x"',
    "application/json",
    "application/json; charset=latin-1",
    "text/plain",
    "text/html",
    "application/octet-stream",
    "application/xml",
    "",
    "garbage",
]
HUGE = 70 * 1024  # over MAX_CONTENT_LENGTH (64 KiB): 413
NEAR_LIMIT = 60 * 1024  # under it: the form's own length checks answer


def _multipart(fields: list[tuple[str, bytes]], boundary: str, broken: bool) -> bytes:
    parts = []
    for name, value in fields:
        # A part whose name does not parse is a known bug with its own test
        # (test_a_multipart_part_without_a_name_is_a_400): keep names parseable.
        name = re.sub(r'["\\\r\n]', "_", name)
        header = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
        if value.startswith(b"FILE:"):  # an uploaded file where text belongs
            header += '; filename="x.txt"\r\nContent-Type: text/plain'
            value = value[5:]
        parts.append(header.encode("utf-8", "surrogatepass") + b"\r\n\r\n" + value + b"\r\n")
    end = b"" if broken else f"--{boundary}--\r\n".encode()
    return b"".join(parts) + end


def _encode(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


@st.composite
def bodies(draw, names: list[str], csrf: str | None, extra: dict[str, str] | None = None):
    """(content type, body bytes, headers) for one POST; csrf None for the
    public forms, which carry no token."""
    chosen = draw(
        st.lists(
            st.tuples(st.one_of(st.sampled_from(names), st.text(max_size=10)), values),
            max_size=12,
        )
    )
    # A plausible form most of the time, so the fuzz reaches past validation;
    # WTForms reads the first value of a name, so the order decides who wins.
    fields = list(chosen)
    if extra and draw(st.integers(0, 3)):
        plausible = [(k, v) for k, v in extra.items() if draw(st.integers(0, 5))]
        fields = plausible + fields if draw(st.booleans()) else fields + plausible
    # Mostly with a valid CSRF token, so the view itself is reached.
    if csrf is not None and draw(st.integers(0, 3)):
        fields.insert(0, ("csrf_token", csrf))
    headers: dict[str, str] = {}
    if csrf is not None and draw(st.booleans()):
        headers["X-CSRFToken"] = csrf  # Flask-WTF also reads the token from here
    # Weighted towards the encodings browsers use: they reach the view.
    encoding = draw(
        st.sampled_from(
            ["urlencoded"] * 4
            + ["multipart"] * 2
            + ["urlencoded+bytes", "json", "text", "raw", "huge", "near"]
        )
    )
    if encoding == "urlencoded":
        body = urlencode(fields, encoding="utf-8", errors="surrogatepass").encode()
        return "application/x-www-form-urlencoded", body, headers
    if encoding == "urlencoded+bytes":
        # Raw bytes that are not UTF-8, and raw CR/LF/NUL, inside the body.
        raw = draw(st.binary(max_size=40))
        name = draw(st.sampled_from(names))
        body = (
            urlencode(fields, errors="surrogatepass").encode() + b"&" + name.encode() + b"=" + raw
        )
        return "application/x-www-form-urlencoded", body, headers
    if encoding == "multipart":
        boundary = draw(st.sampled_from(["b0undary", "x" * 70, "---- spaced ----"]))
        as_bytes = [(k, _encode(v)) for k, v in fields]
        if draw(st.booleans()):
            as_bytes.append((draw(st.sampled_from(names)), draw(st.binary(max_size=40))))
        if draw(st.booleans()):
            as_bytes.append((draw(st.sampled_from(names)), b"FILE:" + draw(st.binary(max_size=20))))
        broken = draw(st.integers(0, 5)) == 0
        ctype = f"multipart/form-data; boundary={boundary}"
        if draw(st.integers(0, 5)) == 0:
            ctype = draw(st.sampled_from(CONTENT_TYPES))
        return ctype, _multipart(as_bytes, boundary, broken), headers
    if encoding == "json":
        shape = draw(st.sampled_from(["strings", "odd-types", "not-an-object", "invalid"]))
        if shape == "strings":
            doc = json.dumps(dict(fields))
        elif shape == "odd-types":
            odd = st.one_of(
                st.integers(),
                st.floats(allow_nan=True),
                st.booleans(),
                st.none(),
                st.lists(values, max_size=3),
                st.dictionaries(st.text(max_size=5), values, max_size=3),
            )
            doc = json.dumps({**dict(fields), **draw(st.dictionaries(st.sampled_from(names), odd))})
        elif shape == "not-an-object":
            doc = json.dumps(draw(st.one_of(st.lists(values, max_size=3), values, st.integers())))
        else:
            doc = draw(st.sampled_from(["{", '{"email": }', "\x00", "[1,", "nul"]))
        return "application/json", doc.encode("utf-8", "surrogatepass"), headers
    if encoding == "text":
        body = "\r\n".join(f"{k}={v}" for k, v in fields)
        return "text/plain", _encode(body), headers
    if encoding == "raw":
        return draw(st.sampled_from(CONTENT_TYPES)), draw(st.binary(max_size=2000)), headers
    size = HUGE if encoding == "huge" else NEAR_LIMIT
    field = draw(st.sampled_from(names))
    if draw(st.booleans()):
        body = urlencode([*fields, (field, "x" * size)], errors="surrogatepass").encode()
        return "application/x-www-form-urlencoded", body, headers
    as_bytes = [(k, _encode(v)) for k, v in fields] + [(field, b"x" * size)]
    return (
        "multipart/form-data; boundary=b0undary",
        _multipart(as_bytes, "b0undary", False),
        headers,
    )


def _mutate(token: str, how: int, char: str) -> str:
    if not token:
        return char
    i = how % len(token)
    return [
        token[:i] + char + token[i + 1 :],
        token[:i],
        token + char,
        token[:i] + token[i + 1 :],
        token.swapcase(),
        token.replace(".", char),
    ][how % 6]


@st.composite
def path_tokens(draw, real: list[str]) -> str:
    """The <token> part of a URL, already quoted for the path."""
    kind = draw(st.sampled_from(["real", "mutated", "text", "bytes", "long"]))
    if kind == "real":  # valid, but maybe for another purpose or lead
        return draw(st.sampled_from(real))
    if kind == "mutated":
        token = _mutate(
            draw(st.sampled_from(real)), draw(st.integers(0, 10_000)), draw(st.characters())
        )
    elif kind == "text":
        token = draw(st.one_of(st.text(min_size=1, max_size=80), nasty.filter(bool)))
    elif kind == "long":
        token = draw(st.sampled_from(real)) * draw(st.integers(2, 20))
    else:
        return "".join(f"%{b:02X}" for b in draw(st.binary(min_size=1, max_size=60)))
    return quote(token.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def query_strings(draw) -> str:
    keys = st.sampled_from(
        ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "next", "x"]
    )
    pairs = draw(st.lists(st.tuples(keys, values), max_size=6))
    q = urlencode(pairs, errors="surrogatepass")
    if draw(st.booleans()):
        q += "&" + "".join(f"%{b:02X}" for b in draw(st.binary(max_size=20)))
    return "?" + q if q else ""


@st.composite
def request_headers(draw) -> dict[str, str]:
    out = {}
    # Not Cookie: a new session would make the module's CSRF token stale.
    for name in ("User-Agent", "Referer", "X-Forwarded-For", "Accept-Language"):
        if draw(st.integers(0, 3)) == 0:
            out[name] = draw(header_values)
    # The signup's Origin check: mostly ours (else a fuzzed Referer decides).
    origin = draw(
        st.one_of(
            st.just(ORIGIN),
            st.sampled_from(["https://evil.example", "null", "http://localhost:5000"]),
            header_values,
            st.none(),
        )
    )
    if origin is not None:
        out["Origin"] = origin
    return out


# --- The site under attack: one app and one visitor session for the module.


class Site:
    def __init__(self, tmp_path):
        config = {
            **base_config(tmp_path),
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'fuzz.sqlite3'}",
            "WTF_CSRF_ENABLED": True,
            "SIGNUP_RATE_LIMIT": "1000000 per minute",
            "LOGIN_RATE_LIMIT": "1000000 per minute",
            # The client's address then comes from X-Forwarded-For: fuzzed too.
            "TRUSTED_PROXY_COUNT": 1,
        }
        self.app = create_app(config)
        with self.app.app_context():
            db.create_all()
            leads = {}
            for email, status in (
                ("pending@example.com", LeadStatus.PENDING),
                ("confirmed@example.com", LeadStatus.CONFIRMED),
                ("gone@example.com", LeadStatus.UNSUBSCRIBED),
            ):
                signup.subscribe(
                    signup.SignupRequest(
                        email=email, topics=["newsletter", "cspo-classes"], placement="page"
                    ),
                    subscriptions.Evidence(),
                )
                lead = subscriptions.lead_by_email(email)
                lead.status = status
                leads[email] = lead
            db.session.add(
                User(
                    email="staff@example.com",
                    password_hash=hash_password("correct horse battery staple"),
                    role=Role.MARKETER,
                )
            )
            admin = User(email="admin@example.com", password_hash="-", role=Role.ADMIN)
            db.session.add(admin)
            db.session.flush()
            sessions.start(admin, "127.0.0.1", "tests")
            db.session.commit()
            admin_id = admin.get_id()
            self.tokens = [
                make(lead)
                for lead in leads.values()
                for make in (
                    subscriptions.confirm_token,
                    subscriptions.preferences_token,
                    subscriptions.unsubscribe_token,
                )
            ]
            self.tables = [
                t for t in db.metadata.sorted_tables if t.name != "page_view_daily"
            ]  # article views are counted on GET, by design
        # Table names from our own metadata, not from input.
        counts = [f'(SELECT count(*) FROM "{t.name}")' for t in self.tables]  # noqa: S608
        self.counts_sql = "SELECT " + ", ".join(counts)
        self.reader = sqlite3.connect(tmp_path / "fuzz.sqlite3")
        self.client = self.app.test_client()
        # A signed-in admin reaches every staff view (no argon2 round trip).
        self.admin = self.app.test_client()
        sign_in(self.admin, admin_id)
        self.seen: Counter[tuple[str, int]] = Counter()  # (route, status) -> examples
        page = self.client.get(ARTICLE).get_data(as_text=True)
        self.signup_fields = form_fields(page)
        assert "csrf_token" not in self.signup_fields
        # The staff and preferences forms' token, in this client's session.
        login = self.client.get("/login").get_data(as_text=True)
        self.csrf = re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', login)[1]
        staff_page = self.admin.get("/admin/classes/new").get_data(as_text=True)
        self.admin_csrf = re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', staff_page)[1]

    def snapshot(self) -> tuple:
        """Row counts of every table, and the state of every lead and user:
        one statement on a connection of its own, so it stays cheap."""
        return (
            self.reader.execute(self.counts_sql).fetchone(),
            self.reader.execute(
                "SELECT email, status, name, confirmed_at, unsubscribed_at, "
                "last_confirmation_at FROM lead ORDER BY id"
            ).fetchall(),
            self.reader.execute("SELECT * FROM lead_topic ORDER BY 1, 2").fetchall(),
            self.reader.execute(
                "SELECT email, password_hash, last_login_at FROM user_account"
            ).fetchall(),
        )

    def check(self, method: str, url: str, ctype=None, body=b"", headers=None, client=None):
        """The request, and its answer checked: no 5xx, and nothing changed
        by a refused request, a GET or a HEAD."""
        before = self.snapshot()
        r = (client or self.client).open(
            url, method=method, data=body, content_type=ctype, headers=headers or {}
        )
        where = f"{method} {url[:200]!r} {ctype!r} {body[:300]!r} {headers!r}"
        route = "/" + url.split("?")[0].split("/")[1]
        self.seen[(f"{method} {route}", r.status_code)] += 1
        assert r.status_code < 500, f"{r.status_code} for {where}"
        page = r.get_data(as_text=True)
        assert "Traceback" not in page, where
        if 400 <= r.status_code < 500 or method in ("GET", "HEAD"):
            assert self.snapshot() == before, f"{r.status_code} but rows changed: {where}"
        return r


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    s = Site(tmp_path_factory.mktemp("fuzz"))
    yield s
    # What the fuzzer reached, for the log (pytest -s, or -rP on a failure).
    for (route, status), n in sorted(s.seen.items()):
        print(f"fuzz {route:28} {status}: {n}")
    print(f"fuzz total: {s.seen.total()} requests")
    s.reader.close()
    with s.app.app_context():
        db.engine.dispose()


# --- One test per route.


@FUZZ
@given(data=st.data())
def test_fuzz_post_subscribe(site, data):
    plausible = {**site.signup_fields, "email": "fuzz@example.com", "topics": "newsletter"}
    ctype, body, headers = data.draw(bodies(SIGNUP_NAMES, None, plausible))
    headers.update(data.draw(request_headers()))
    r = site.check("POST", "/subscribe", ctype, body, headers)
    if headers.get("Origin") in ("https://evil.example", "null"):
        # Refused (rows unchanged): 403, or a body too large or malformed
        # for any form, which is refused before the view looks at Origin.
        assert r.status_code in (400, 403, 413), r.status_code


@FUZZ
@given(data=st.data())
def test_fuzz_get_pages_with_forms(site, data):
    """GET pages that build a signup form from the query string and headers."""
    path = data.draw(st.sampled_from(["/subscribe", ARTICLE, "/", "/login", "/nope"]))
    r = site.check("GET", path + data.draw(query_strings()), headers=data.draw(request_headers()))
    assert r.status_code in (200, 404)


@FUZZ
@given(data=st.data())
def test_fuzz_confirm(site, data):
    # Opening the link (GET, HEAD: rows checked unchanged) or its button (POST).
    token = data.draw(path_tokens(site.tokens))
    method = data.draw(st.sampled_from(["GET", "HEAD", "POST"]))
    r = site.check(method, f"/confirm/{token}", headers=data.draw(request_headers()))
    # A token that starts with "/" makes a doubled slash: a 404 from the
    # router (web/routing.py), never a redirect.
    assert r.status_code in (200, 400, 404, 409, 410)


@FUZZ
@given(data=st.data())
def test_fuzz_preferences(site, data):
    token = data.draw(path_tokens(site.tokens))
    if data.draw(st.booleans()):
        site.check("GET", f"/preferences/{token}" + data.draw(query_strings()))
    else:
        plausible = {"topics": "newsletter", "save": "1"}
        ctype, body, headers = data.draw(bodies(PREFERENCE_NAMES, site.csrf, plausible))
        site.check("POST", f"/preferences/{token}", ctype, body, headers)


@FUZZ
@given(data=st.data())
def test_fuzz_unsubscribe(site, data):
    token = data.draw(path_tokens(site.tokens))
    if data.draw(st.booleans()):
        r = site.check("GET", f"/unsubscribe/{token}" + data.draw(query_strings()))
        assert r.status_code != 302
    else:
        plausible = {"List-Unsubscribe": "One-Click"}
        ctype, body, headers = data.draw(bodies(PREFERENCE_NAMES, site.csrf, plausible))
        r = site.check("POST", f"/unsubscribe/{token}", ctype, body, headers)
        # RFC 8058: whatever the body, a one-click answer is never a redirect.
        assert not 300 <= r.status_code < 400


@FUZZ
@given(data=st.data())
def test_fuzz_confirm_resend(site, data):
    confirm_tokens = site.tokens[::3]  # made in the order confirm, preferences, unsubscribe
    token = data.draw(
        st.one_of(st.sampled_from(confirm_tokens), st.sampled_from(site.tokens), values)
    )
    ctype, body, headers = data.draw(bodies(RESEND_NAMES, None, {"token": token}))
    site.check("POST", "/confirm/resend", ctype, body, headers)


# Each login that reaches the password check costs an argon2id hash (~0.1 s):
# fewer examples, still hundreds of bodies through the form.
@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_fuzz_login(site, data):
    plausible = {
        "email": data.draw(st.sampled_from(["staff@example.com", "STAFF@example.com ", "x@y.z"])),
        "password": data.draw(values),
    }
    ctype, body, headers = data.draw(bodies(LOGIN_NAMES, site.csrf, plausible))
    if ctype == "application/json" or b'filename="' in body:
        # See test_login_reads_only_form_bodies: a known bug in auth.LoginForm.
        ctype, body = "application/x-www-form-urlencoded", body[:0]
    query = data.draw(st.sampled_from(["", "?next=/marketing/", "?next=//evil.example"]))
    r = site.check("POST", "/login" + query, ctype, body, headers)
    # Nothing signs in with a fuzzed password.
    assert not 300 <= r.status_code < 400


@st.composite
def path_values(draw) -> str:
    """A path parameter, quoted: text, nasty values, integers of any size."""
    value = draw(
        st.one_of(
            st.text(min_size=1, max_size=40),
            nasty.filter(bool),
            st.integers().map(str),
            st.integers(min_value=2**31 - 2, max_value=2**64).map(str),
            st.dates().map(str),
        )
    )
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@FUZZ
@given(data=st.data())
def test_fuzz_path_parameters(site, data):
    """Any route of the URL map, each parameter replaced, as a visitor and as
    an admin (test_input_sweep.py runs a fixed list on both databases)."""
    rules = [r for r in site.app.url_map.iter_rules() if r.arguments]
    rule = data.draw(st.sampled_from(sorted(rules, key=str)))
    url = rule.rule
    for name in sorted(rule.arguments):
        url = re.sub(rf"<(?:[^:<>]+:)?{name}>", lambda _m: data.draw(path_values()), url, count=1)
    method = data.draw(st.sampled_from(sorted(rule.methods - {"OPTIONS"})))
    client = data.draw(st.sampled_from([site.client, site.admin]))
    r = site.check(method, url, client=client)
    if any(ord(c) < 0x20 or c == "\x7f" for c in unquote(url)):
        assert r.status_code == 404, url  # the router: before any view


# The admin's forms that need nothing to exist first, and what fills them in.
STAFF_FORMS = {
    "/admin/classes/new": class_form(""),
    "/admin/announcements/new": announcement_form(""),
    "/admin/users": {"email": "new@example.com", "role": "marketer", "password": "p" * 12},
    "/admin/suppressions": {"email": "gone@example.com"},
}


@settings(FUZZ, max_examples=200)
@given(data=st.data())
def test_fuzz_staff_forms(site, data):
    """An admin's forms, with NUL, huge numbers, dates at the edges, JSON,
    files and broken bodies (test_input_sweep.py sweeps each field on both
    databases)."""
    path = data.draw(st.sampled_from(sorted(STAFF_FORMS)))
    plausible = {k: v for k, v in STAFF_FORMS[path].items() if k != "csrf_token"}
    edge = st.sampled_from(
        ["0001-01-01", "9999-12-31", "2147483648", "9223372036854775808", "1e400", "NaN"]
    )
    for name in plausible:
        if data.draw(st.integers(0, 5)) == 0:
            plausible[name] = data.draw(st.one_of(values, edge))
    names = [*plausible, "submit"]
    ctype, body, headers = data.draw(bodies(names, site.admin_csrf, plausible))
    site.check("POST", path, ctype, body, headers, client=site.admin)


# --- Targeted cases the fuzzer found, kept as plain regressions.


@pytest.mark.parametrize(
    ("json_body", "files"),
    [
        ({"email": 5, "topics": ["newsletter"]}, None),
        ({"email": ["a@example.com"], "name": {"x": 1}, "topics": "newsletter"}, None),
        (None, "email"),
        (None, "name"),
    ],
    ids=["json-number", "json-list-and-object", "file-as-email", "file-as-name"],
)
def test_json_and_file_bodies_are_a_400_not_a_500(app, client, json_body, files):
    fields = form_fields(client.get(ARTICLE).get_data(as_text=True))
    headers = browser_headers(ARTICLE)
    if json_body is not None:
        r = client.post("/subscribe", json={**fields, **json_body}, headers=headers)
    else:
        data = {**fields, "email": "ann@example.com", "topics": "newsletter"}
        data[files] = (io.BytesIO(b"ann@example.com"), "x.txt")
        r = client.post(
            "/subscribe", data=data, content_type="multipart/form-data", headers=headers
        )
    assert r.status_code in (303, 400)
    with app.app_context():
        names = db.session.execute(select(Lead.name)).scalars().all()
    assert all(isinstance(n, str | None) for n in names)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_login_reads_only_form_bodies(client):
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', html)[1]
    r = client.post("/login", json={"email": 5, "password": 7}, headers={"X-CSRFToken": token})
    assert r.status_code == 400


@pytest.fixture
def app_config(app_config):
    return {**app_config, "WTF_CSRF_ENABLED": True, "TRUSTED_PROXY_COUNT": 1}


@pytest.mark.parametrize(
    "headers",
    [
        {"User-Agent": "Mozilla/5.0\x00"},
        {"User-Agent": "\x01\x1b[31m" + "A" * 1000},
        {"X-Forwarded-For": "z" * 100},
        {"X-Forwarded-For": "1.2.3.4\x00"},
        {"X-Forwarded-For": "fe80::1%" + "e" * 60},
        {"X-Forwarded-For": "<script>"},
    ],
    ids=["nul-agent", "control-agent", "long-xff", "nul-xff", "zone-xff", "markup-xff"],
)
def test_hostile_request_headers_do_not_lose_the_signup(app, client, headers):
    """PostgreSQL refuses NUL in text and 45+ characters in consent_event.ip:
    evidence is cleaned first, so the signup is kept (a server other than
    gunicorn may pass such headers on; a misconfigured proxy count lets a
    client write X-Forwarded-For)."""
    fields = form_fields(client.get(ARTICLE).get_data(as_text=True))
    fields.update(email="ann@example.com", topics=["newsletter"])
    r = client.post("/subscribe", data=fields, headers=headers)
    assert r.status_code == 303
    with app.app_context():
        ip, agent = db.session.execute(text("SELECT ip, user_agent FROM consent_event")).one()
    assert ip is None or ip in ("127.0.0.1", "1.2.3.4", "fe80::1")
    assert agent is None or (agent.isprintable() and len(agent) <= 500)


NAMELESS_PART = b"--bb\r\nContent-Disposition: form-data\r\n\r\nv\r\n--bb--\r\n"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("path", ["/subscribe", "/login", "/confirm/resend", "/preferences/x"])
def test_a_multipart_part_without_a_name_is_a_400(client, path):
    r = client.post(path, data=NAMELESS_PART, content_type="multipart/form-data; boundary=bb")
    assert r.status_code == 400
