"""The JSON API for admins: classes (the admin form's rules), announcements,
the outbox; and the API's description: openapi.json and the docs page."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from extensions import db
from models import Role, TokenScope, TrainingClass
from services import clock
from services.campaigns import announcements
from tests.factories import bulk_leads, due_announcement, make_api_token, make_class
from tests.helpers import audit_actions, class_form, count, csrf_token, sign_in_as

API_CLASS = {
    **{k: v for k, v in class_form("").items() if k != "csrf_token"},
    "online": False,
    "price": "1290.00",
    "seats": 12,
    "seats_taken": 3,
}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def admin_token(app) -> str:
    with app.app_context():
        return make_api_token("admin-api@example.com", Role.ADMIN, TokenScope.WRITE)


def _problem(r, status: int) -> dict:
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.mimetype == "application/problem+json"
    return r.get_json()


def test_a_class_made_through_the_api_is_the_class_the_admin_form_makes(
    app, client, admin_token, frozen
):
    r = client.post("/api/v1/classes", json=API_CLASS, headers=bearer(admin_token))
    assert r.status_code == 201
    made = r.get_json()
    assert made["starts_at"] == "2026-10-25T08:00:00+00:00"  # 09:00 in Berlin, summer time
    assert (made["seats_left"], made["price"], made["online"]) == (9, "1290.00", False)
    sign_in_as(app, client, Role.ADMIN)
    form = class_form(csrf_token(client, "/admin/classes/new"))
    assert client.post("/admin/classes/new", data=form).status_code == 303
    with app.app_context():
        rows = db.session.execute(select(TrainingClass).order_by(TrainingClass.id)).scalars()
        columns = [c.key for c in TrainingClass.__table__.c if c.key not in ("id", "public_id")]
        via_api, via_form = ({k: getattr(row, k) for k in columns} for row in rows)
        assert via_api == via_form
    assert audit_actions(app, made["id"]) == ["class.create"]
    # A change touches only the fields sent.
    r = client.patch(
        f"/api/v1/classes/{made['id']}", json={"seats_taken": 12}, headers=bearer(admin_token)
    )
    assert (r.get_json()["seats_left"], r.get_json()["starts_at"]) == (0, made["starts_at"])
    listed = client.get("/api/v1/classes", headers=bearer(admin_token)).get_json()["classes"]
    assert {c["id"] for c in listed} >= {made["id"]} and len(listed) == 2
    assert audit_actions(app, made["id"]) == ["class.create", "class.update"]


# What the admin form refuses, the API refuses too: (overrides, field in the 422).
REFUSED = [
    ({"end_time": "08:00"}, "class"),
    ({"start_date": "0001-01-01"}, "class"),
    ({"end_date": "2101-01-01"}, "class"),
    ({"start_date": "10000-01-01"}, "start_date"),
    ({"location": ""}, "class"),
    ({"seats": 2}, "class"),
    ({"registration_url": "javascript:alert(1)"}, "class"),
    ({"registration_url": "https://user@evil.example/"}, "class"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"price": "-1"}, "price"),
    ({"currency": "EURO"}, "currency"),
    ({"seats": 10_001}, "seats"),
    ({"title": ""}, "title"),
    ({"title": "CSPO\x00"}, "title"),
    ({"status": "maybe"}, "status"),
]


@pytest.mark.parametrize(("overrides", "field"), REFUSED)
def test_the_api_refuses_what_the_admin_form_refuses(app, client, admin_token, overrides, field):
    body = {**API_CLASS, **overrides}
    r = client.post("/api/v1/classes", json=body, headers=bearer(admin_token))
    assert field in _problem(r, 422)["errors"]
    sign_in_as(app, client, Role.ADMIN)
    form = class_form(
        csrf_token(client, "/admin/classes/new"),
        **{k: ("" if v is None else str(v)) for k, v in overrides.items()},
    )
    assert client.post("/admin/classes/new", data=form).status_code == 400
    assert count(app, TrainingClass) == 0
    assert audit_actions(app) == ["api_token.create"]


def test_a_refused_change_leaves_the_class_as_it_was(app, client, admin_token):
    with app.app_context():
        cls = make_class()
        db.session.commit()
        public_id, before = cls.public_id, (cls.starts_at, cls.ends_at)
    r = client.patch(
        f"/api/v1/classes/{public_id}", json={"end_date": "2000-01-01"}, headers=bearer(admin_token)
    )
    assert "must end after it starts" in str(_problem(r, 422)["errors"])
    _problem(client.patch("/api/v1/classes/nope", json={}, headers=bearer(admin_token)), 404)
    with app.app_context():
        cls = db.session.execute(select(TrainingClass)).scalar_one()
        assert (cls.starts_at, cls.ends_at) == before
    assert audit_actions(app, public_id) == []


def test_announcements_their_progress_and_the_outbox(app, client, admin_token, frozen):
    with app.app_context():
        bulk_leads(3)
        ann = due_announcement()
        announcements.fan_out(ann.id)
        db.session.commit()
        public_id = ann.public_id
    h = bearer(admin_token)
    listed = client.get("/api/v1/announcements", headers=h).get_json()["announcements"]
    assert [(a["id"], a["status"], a["recipients"]) for a in listed] == [(public_id, "sending", 3)]
    one = client.get(f"/api/v1/announcements/{public_id}", headers=h).get_json()
    assert one["subject"] == "New CSPO dates" and one["failure"] is None
    progress = client.get(f"/api/v1/announcements/{public_id}/progress", headers=h).get_json()
    assert (progress["total"], progress["queued"], progress["done"]) == (3, 3, 0)
    _problem(client.get("/api/v1/announcements/nope/progress", headers=h), 404)
    frozen.advance(90)
    outbox = client.get("/api/v1/outbox", headers=h).get_json()
    assert outbox["counts"]["queued"] == 3 and outbox["counts"]["sent"] == 0
    assert outbox["oldest_due_seconds"] == pytest.approx(
        (clock.now() - ann.send_at).total_seconds(), abs=120
    )


# --- The API's description


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: list[str] = []
        self.scripts: list[dict] = []
        self.inline_handlers: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "script":
            self.scripts.append(attrs)
        self.inline_handlers += [k for k in attrs if k.startswith("on")]


def test_the_docs_page_lists_every_operation_without_scripts_or_cdn(app, client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"] == "3.0.3"
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    ops = {(m.upper(), p) for p, item in spec["paths"].items() for m in item if m != "parameters"}
    routes = {
        (m, re.sub(r"<(\w+)>", r"{\1}", r.rule))
        for r in app.url_map.iter_rules()
        if r.endpoint.startswith(("api-leads", "api-campaigns"))
        for m in r.methods - {"HEAD", "OPTIONS"}
    }
    assert ops == routes and len(ops) == 13
    r = client.get("/api/v1/docs")
    assert r.status_code == 200 and "Set-Cookie" not in r.headers
    html = r.get_data(as_text=True)
    for method, path in ops:
        assert f"<code>{method} {path}</code>" in html
    tags = _Tags()
    tags.feed(html)
    assert len(tags.ids) == len(set(tags.ids)), "duplicate ids"
    assert all(s.get("src", "").startswith("/static/") for s in tags.scripts)
    assert not tags.inline_handlers and "https://cdn" not in html and "unpkg" not in html
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    for slug in ("unauthorized", "validation", "rate-limited"):
        assert f'id="problem-{slug}"' in html
