"""No input gives a 5xx, on SQLite and on PostgreSQL: every path parameter
of every route in the URL map, every query parameter the site's own links
and filter forms carry, and every field of every form a visitor or an admin
can reach, each replaced in turn by a value that has broken web apps
before: NUL and other control characters, integers past what a column
holds, dates at the edges of the calendar, and very long text.

PostgreSQL is the stricter judge: its text cannot hold NUL and its integer
columns stop at 2**31 - 1, where SQLite takes both. test_fuzz_forms.py
throws Hypothesis at the public forms and the path parameters, on SQLite;
this sweep goes through a fixed list on both databases.
"""

from __future__ import annotations

import io
import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest
from sqlalchemy import select
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule
from werkzeug.routing.converters import NumberConverter

from extensions import db
from models import Announcement, Role, TrainingClass
from services.leads import subscriptions
from tests.factories import make_class, queue_every_kind
from tests.helpers import (
    ARTICLE_PATH,
    ORIGIN,
    PASSWORD,
    add_user,
    announcement_form,
    class_form,
    create_announcement,
    sign_in,
)
from tests.page_forms import page_forms

# Characters no one types: every path parameter refuses them with a 404.
CONTROL = ["\x00", "a\x00b", "\x01", "\x1b[31m", "\x1f", "\x7f"]
# Past PostgreSQL's integer (the id columns) and bigint, and not ids at all.
HUGE = ["2147483648", "9223372036854775808", "-9223372036854775809", "1" + "0" * 40, "0"]
EDGE_DATES = ["0001-01-01", "9999-12-31", "10000-01-01"]
OTHER = ["1e400", "NaN", "\ufffd", "\u202e", "x" * 3000, ".", ""]
VALUES = CONTROL + HUGE + EDGE_DATES + OTHER
# Fewer for form fields and query parameters, which are many more.
FIELD_VALUES = [
    "\x00",
    "a\x00b",
    "\x1b[31m",
    "\x7f",
    "2147483648",
    "9223372036854775808",
    "-9223372036854775809",
    "1" + "0" * 40,
    "0001-01-01",
    "9999-12-31",
    "10000-01-01",
    "1e400",
    "NaN",
    "x" * 3000,
    "",
]

# What a form needs to get past its own checks, so that the swept field
# reaches the service behind it (field names, across every form).
LEAD_EMAIL = "confirmed0@example.com"
PLAUSIBLE = {
    **class_form(""),
    **announcement_form(""),
    "email": "fuzz@example.com",
    "password": "a long enough pass phrase 123",
    "confirm_email": LEAD_EMAIL,
    "topics": "newsletter",
    "send_date": "2026-12-01",
    "send_time": "09:00",
}
del PLAUSIBLE["csrf_token"]
# Signing out would end the sweep's session.
SKIP_FORMS = {"/logout"}


@pytest.fixture
def app_config(app_config):
    return {
        **app_config,
        "WTF_CSRF_ENABLED": True,
        "SIGNUP_RATE_LIMIT": "1000000 per minute",
        "LOGIN_RATE_LIMIT": "1000000 per minute",
    }


class Sweep:
    """Requests and what they answered; a 5xx or a traceback is a failure."""

    def __init__(self, client):
        self.client = client
        self.failures: list[str] = []

    def send(self, method: str, url: str, data=None, headers=None, note: str = ""):
        r = self.client.open(url, method=method, data=data, headers=headers or {})
        if r.status_code >= 500 or "Traceback" in r.get_data(as_text=True):
            self.failures.append(f"{r.status_code} {method} {url[:200]!r} {note}")
        return r

    def check(self) -> None:
        # 5xx first: they are the worst, and the list is cut short.
        found = sorted(self.failures, key=lambda f: not f.startswith("5"))
        assert not found, f"{len(found)} failed:\n" + "\n".join(found[:60])


def seed(app, client) -> dict[str, str]:
    """A lead, a class, a draft announcement, mail of every kind, a
    marketer and a signed-in admin; returns a link token for each purpose."""
    with app.app_context():
        queue_every_kind(["Ann"])
        make_class()
        db.session.commit()
        lead = subscriptions.lead_by_email(LEAD_EMAIL)
        tokens = {
            "confirm": subscriptions.confirm_token(
                subscriptions.lead_by_email("pending0@example.com")
            ),
            "preferences": subscriptions.preferences_token(lead),
            "unsubscribe": subscriptions.unsubscribe_token(lead),
        }
    add_user(app, "marketer@example.com", Role.MARKETER)
    sign_in(client, add_user(app, "admin@example.com", Role.ADMIN))
    create_announcement(client)
    return tokens


# --- Path parameters: every rule of the URL map.


def _plausible_arg(converter) -> str:
    if hasattr(converter, "items"):  # <any(a, b):x>
        return sorted(converter.items)[0]
    if isinstance(converter, NumberConverter):
        return "1"
    return "dummy"


def _urls(rule: Rule, name: str, value: str) -> str:
    """The rule's URL with `value` (quoted) as its `name` parameter, and
    plausible values in the others."""
    out = rule.rule
    for arg in rule.arguments:
        converter = rule._converters[arg]
        raw = value if arg == name else _plausible_arg(converter)
        out = re.sub(rf"<(?:[^:<>]+:)?{arg}>", quote(raw, safe=""), out, count=1)
    return out


def _swept_rules(app) -> list[tuple[Rule, str]]:
    out = []
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods & {"GET", "POST"}):
            if rule.arguments:
                out.append((rule, method))
    return out


def test_the_sweep_covers_every_kind_of_path_parameter(app):
    names = {name for rule, _ in _swept_rules(app) for name in rule.arguments}
    assert {"public_id", "token", "slug", "row_id", "user_id", "filename", "action"} <= names


@pytest.mark.parametrize("who", ["anonymous", "admin"])
def test_no_path_parameter_gives_a_5xx(app, client, who):
    if who == "admin":
        seed(app, client)
    sweep = Sweep(client)
    data = {"csrf_token": "x"}
    for rule, method in _swept_rules(app):
        for name in rule.arguments:
            converter = rule._converters[name]
            for value in VALUES:
                url = _urls(rule, name, value)
                r = sweep.send(method, url, data=data if method == "POST" else None)
                where = f"{method} {url[:80]!r} ({rule.endpoint}) as {who}"
                refused = value in CONTROL or (
                    isinstance(converter, NumberConverter) and value in HUGE
                )
                if refused and r.status_code != 404:
                    # Refused by the router, before any view looks anything up.
                    sweep.failures.append(f"{where}: {r.status_code}, not 404")
    sweep.check()


# The findings of the attack run, one by one.
NUL_PATHS = [
    ("GET", "/certified-scrum-product-owner-cspo-training/%00.ics", None),
    ("GET", "/marketing/leads/%00", "admin"),
    ("GET", "/marketing/leads/%00/data.json", "admin"),
    ("POST", "/marketing/leads/%00/erase", "admin"),
    ("GET", "/admin/classes/%00", "admin"),
    ("POST", "/admin/classes/%00/cancel", "admin"),
    ("GET", "/admin/announcements/%00", "admin"),
    ("GET", "/admin/announcements/%00/edit", "admin"),
    ("GET", "/admin/announcements/%00/preview.html", "admin"),
    ("GET", "/admin/announcements/%00/progress.json", "admin"),
    ("POST", "/admin/announcements/%00/pause", "admin"),
    ("POST", "/admin/announcements/%00/test", "admin"),
    ("GET", "/confirm/%00", None),
    ("POST", "/unsubscribe/%00", None),
    ("GET", "/preferences/a%00b", None),
    ("GET", "/register/%00", None),
    ("GET", "/%00", None),
]
HUGE_PATHS = [
    ("GET", "/admin/outbox/9223372036854775808"),
    ("GET", "/admin/outbox/9223372036854775808/html"),
    ("GET", "/admin/outbox/2147483648"),
    ("POST", "/admin/outbox/9223372036854775808/retry"),
    ("POST", "/admin/users/9223372036854775808"),
    ("POST", "/admin/users/2147483648"),
]


@pytest.mark.parametrize(("method", "path", "who"), NUL_PATHS)
def test_a_nul_in_a_path_is_a_404(app, client, method, path, who):
    if who:
        sign_in(client, add_user(app, "admin@example.com", Role.ADMIN))
    r = client.open(path, method=method)
    assert r.status_code == 404
    assert "We could not find that page" in r.get_data(as_text=True)


@pytest.mark.parametrize(("method", "path"), HUGE_PATHS)
def test_an_id_past_the_integer_columns_is_a_404(app, client, method, path):
    sign_in(client, add_user(app, "admin@example.com", Role.ADMIN))
    assert client.open(path, method=method).status_code == 404


@pytest.mark.parametrize("page", ["/admin/outbox", "/admin/audit"])
@pytest.mark.parametrize("before", ["9223372036854775808", "2147483648", "-1", "0", "x"])
def test_a_before_that_is_no_row_id_is_a_400(app, client, page, before):
    sign_in(client, add_user(app, "admin@example.com", Role.ADMIN))
    assert client.get(f"{page}?before={before}").status_code == 400
    assert client.get(f"{page}?before=2147483647").status_code == 200


def test_a_nul_in_the_sign_in_email_is_a_400(app, client):
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', html)[1]
    r = client.post(
        "/login", data={"csrf_token": token, "email": "a\x00b@example.com", "password": PASSWORD}
    )
    assert r.status_code == 400
    assert "Sign in" in r.get_data(as_text=True)


@pytest.mark.parametrize("value", ["\x00", "a\x00b", "\x01"])
def test_a_control_character_in_a_staff_query_is_a_400(app, client, value):
    sign_in(client, add_user(app, "admin@example.com", Role.ADMIN))
    q = urlencode({"topic": "cspo-classes", "source": value})
    assert client.get(f"/admin/audience-count.json?{q}").status_code == 400
    q = urlencode({"class": value})
    assert client.get(f"/admin/announcements/new?{q}").status_code == 400


@pytest.mark.parametrize("body", ["json", "file"])
def test_a_staff_form_takes_no_json_and_no_file(app, client, body):
    """Flask-WTF would hand a JSON body's numbers and lists, or an uploaded
    file, to validators that expect text: a 500 (POST /admin/users with
    {"email": 5}). No staff page sends either."""
    seed(app, client)
    token = re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', client.get("/admin/").text)[1]
    with app.app_context():
        ids = {
            "lead": subscriptions.lead_by_email(LEAD_EMAIL).public_id,
            "class": db.session.scalars(select(TrainingClass.public_id)).first(),
            "announcement": db.session.scalars(select(Announcement.public_id)).first(),
        }
    posts = [
        rule
        for rule in app.url_map.iter_rules()
        if "POST" in rule.methods and rule.endpoint.startswith(("admin.", "marketing."))
    ]
    assert len(posts) > 10
    wrong = []
    for rule in posts:
        # Real ids, so that each view is reached, not a 404.
        kind = next((k for k in ids if k in rule.endpoint), None)
        url = _urls(rule, "public_id", ids[kind]) if kind else _urls(rule, "", "")
        if body == "json":
            odd = {"email": 5, "title": ["x"], "password": 7, "confirm_email": {"a": 1}}
            r = client.post(url, json=odd, headers={"X-CSRFToken": token})
        else:
            data = {"csrf_token": token, "email": (io.BytesIO(b"a@example.com"), "a.txt")}
            data |= {"title": (io.BytesIO(b"x"), "t.txt"), "body": (io.BytesIO(b"x"), "b.txt")}
            r = client.post(url, data=data, content_type="multipart/form-data")
        if r.status_code != 400:
            wrong.append(f"{url} ({rule.endpoint}): {r.status_code}")
    assert not wrong, "\n".join(wrong)


# --- Forms and query strings: whatever the pages themselves offer.


def crawl(sweep: Sweep, starts: list[str], prefixes: tuple[str, ...], limit: int = 60):
    """Pages reachable from `starts` under `prefixes`: one form of each kind
    on them (by route and fields), and one link of each kind that carries
    a query string (by route and parameter names)."""
    adapter = sweep.client.application.url_map.bind("localhost")
    todo, seen = list(starts), set()
    forms, queries = {}, {}

    def route(url: str, method: str = "GET") -> str:
        try:
            return adapter.match(urlsplit(url).path, method=method)[0]
        except HTTPException:
            return urlsplit(url).path

    while todo and len(seen) < limit:
        url = todo.pop(0)
        if url in seen or not urlsplit(url).path.startswith(prefixes):
            continue
        seen.add(url)
        if "?" in url:
            names = tuple(sorted(n for n, _ in parse_qsl(urlsplit(url).query)))
            queries.setdefault((route(url), names), url)
        r = sweep.send("GET", url)
        if r.status_code != 200 or r.mimetype != "text/html":
            continue
        found, links = page_forms(r.get_data(as_text=True), url)
        for form in found:
            key = (form.method, route(form.action, form.method), tuple(n for n, _ in form.fields))
            forms.setdefault(key, form)
        todo.extend(link for link in links if link not in seen)
    return list(forms.values()), list(queries.values())


def _filled(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(n, v or PLAUSIBLE.get(n, "")) for n, v in fields]


def sweep_forms(sweep: Sweep, forms, queries, headers=None) -> int:
    sent = 0
    for form in forms:
        if urlsplit(form.action).path in SKIP_FORMS:
            continue
        base = _filled(form.fields)
        for i, (name, _) in enumerate(base):
            for value in FIELD_VALUES:
                fields = [*base[:i], (name, value), *base[i + 1 :]]
                if form.method == "GET":
                    url = urlsplit(form.action).path + "?" + urlencode(fields)
                    sweep.send("GET", url, headers=headers)
                else:
                    note = f"{name}={value[:40]!r}"
                    sweep.send("POST", form.action, MultiDict(fields), headers, note)
                sent += 1
    for link in queries:
        parts = urlsplit(link)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        for i, (name, _) in enumerate(pairs):
            for value in FIELD_VALUES:
                q = urlencode([*pairs[:i], (name, value), *pairs[i + 1 :]])
                sweep.send("GET", f"{parts.path}?{q}", headers=headers)
                sent += 1
    return sent


def test_no_staff_form_or_query_gives_a_5xx(app, client):
    seed(app, client)
    sweep = Sweep(client)
    with app.app_context():
        lead = subscriptions.lead_by_email(LEAD_EMAIL)
        lead_page = f"/marketing/leads/{lead.public_id}"
    starts = [
        "/marketing/",
        "/marketing/?days=90",
        "/marketing/leads?sort=email&status=confirmed",
        lead_page,
        "/admin/",
        "/admin/outbox",
        "/admin/outbox?before=2&status=queued&kind=confirmation",
        "/admin/audit?before=2",
        "/admin/users",
        "/admin/suppressions",
        "/admin/classes",
        "/admin/classes/new",
        "/admin/announcements",
        "/admin/announcements/new?class=x",
        "/admin/audience-count.json?topic=cspo-classes&from=2026-01-01&until=2026-12-31&source=x",
    ]
    forms, queries = crawl(sweep, starts, ("/marketing", "/admin"))
    actions = {urlsplit(f.action).path for f in forms}
    # The sweep reached the forms that matter (an empty sweep proves nothing).
    assert "/admin/classes/new" in actions
    assert "/admin/announcements/new" in actions
    assert any(a.endswith("/schedule") for a in actions)
    assert any(a.startswith("/admin/users/") for a in actions)
    assert f"{lead_page}/erase" in actions
    assert "/marketing/leads" in actions  # the filter form (GET)
    sent = sweep_forms(sweep, forms, queries)
    assert sent > 500
    sweep.check()


def test_no_public_form_gives_a_5xx(app, client):
    tokens = seed(app, client)
    visitor = app.test_client()
    sweep = Sweep(visitor)
    starts = [
        "/",
        ARTICLE_PATH,
        "/certified-scrum-product-owner-cspo-training",
        "/subscribe",
        "/embed/signup?topics=newsletter&source=x",
        "/login",
        f"/confirm/{tokens['confirm']}",
        f"/preferences/{tokens['preferences']}",
        f"/unsubscribe/{tokens['unsubscribe']}",
    ]
    forms, queries = crawl(sweep, starts, ("/",), limit=30)
    actions = {urlsplit(f.action).path for f in forms}
    assert {"/subscribe", "/login"} <= actions
    # As a browser sends them from our pages (the signup's Origin check).
    headers = {"Origin": ORIGIN, "Referer": ORIGIN + ARTICLE_PATH}
    assert sweep_forms(sweep, forms, queries, headers) > 100
    sweep.check()
