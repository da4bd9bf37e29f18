"""The JSON API, in process on SQLite and PostgreSQL: tokens, access, errors
as problem details, and the lead endpoints. Classes, announcements, the
outbox and the docs are in test_api_campaigns.py; gunicorn and schemathesis
in test_api_processes.py."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import func, select

from extensions import db
from models import (
    ApiToken,
    AuditEvent,
    ConsentEvent,
    ConsentText,
    Lead,
    LeadStatus,
    OutboxMessage,
    Role,
    Suppression,
    TokenScope,
)
from services.staff import api_tokens
from tests.factories import make_api_token, make_lead, subscribed_lead
from tests.helpers import T0, audit_actions, count, csrf_token, page_text, sign_in_as

CONSENT = "Yes, send me CSPO class dates. I can unsubscribe in one click."
SIGNUP = {"email": "Ann@Example.com", "consent_text": CONSENT, "topics": ["cspo-classes"]}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def is_problem(r, status: int) -> dict:
    """The answer is an RFC 9457 problem of this status; returns its body."""
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True)[:500])
    assert r.mimetype == "application/problem+json"
    body = r.get_json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    assert body["type"].startswith("http://localhost/api/v1/docs#problem-")
    return body


@pytest.fixture
def writer(app) -> str:
    with app.app_context():
        return make_api_token("marketer@example.com", Role.MARKETER, TokenScope.WRITE)


def data_routes(app) -> list[tuple[str, str]]:
    """(method, url) of every API route that serves data (not the docs)."""
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.endpoint.startswith("api-docs"):
            continue
        if rule.endpoint.startswith("api-reference"):
            continue
        url = rule.rule.replace("<public_id>", "some-id")
        out += [(m, url) for m in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return out


# --- Who may call


def test_every_data_route_wants_a_bearer_token_never_a_session(app, client, writer):
    routes = data_routes(app)
    assert len(routes) >= 12
    sign_in_as(app, client, Role.ADMIN)  # a staff session counts for nothing here
    with app.app_context():
        revoked = make_api_token("gone@example.com", Role.ADMIN)
        api_tokens.revoke(None, api_tokens.authenticate(revoked))
        db.session.commit()
    for method, url in routes:
        r = client.open(url, method=method, json={})
        assert is_problem(r, 401)["detail"].startswith("Send an API token"), url
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="api"'
        for wrong in ("lk_not-a-token", writer[:-1], revoked, "", "Basic " + writer):
            r = client.open(url, method=method, json={}, headers={"Authorization": wrong})
            is_problem(r, 401)
        r = client.open(url, method=method, json={}, headers={"Authorization": "Bearer x"})
        assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    # Nothing was read or written for any of them.
    with app.app_context():
        assert count(app, Lead) == 0
        assert set(audit_actions(app)) == {"api_token.create", "api_token.revoke"}


def test_a_deactivated_users_tokens_stop_working(app, client, writer):
    from services.staff import auth

    assert client.get("/api/v1/leads", headers=bearer(writer)).status_code == 200
    with app.app_context():
        auth.set_active(auth.user_by_email("marketer@example.com"), False)
        db.session.commit()
    is_problem(client.get("/api/v1/leads", headers=bearer(writer)), 401)


def test_scope_and_role_decide_with_a_403(app, client):
    with app.app_context():
        reader = make_api_token("reader@example.com", Role.ADMIN, TokenScope.READ)
        marketer = make_api_token("m@example.com", Role.MARKETER, TokenScope.WRITE)
        lead = make_lead("lead@example.com").public_id
        db.session.commit()
    assert client.get("/api/v1/leads", headers=bearer(reader)).status_code == 200
    r = client.post("/api/v1/subscribe", json=SIGNUP, headers=bearer(reader))
    assert "read-only" in is_problem(r, 403)["detail"]
    r = client.delete(f"/api/v1/leads/{lead}", headers=bearer(reader))
    is_problem(r, 403)
    # A marketer's token does what a marketer may, and no admin work.
    assert client.get("/api/v1/leads", headers=bearer(marketer)).status_code == 200
    for url in ("/api/v1/outbox", "/api/v1/announcements"):
        assert "admin" in is_problem(client.get(url, headers=bearer(marketer)), 403)["detail"]
    is_problem(client.post("/api/v1/classes", json={}, headers=bearer(marketer)), 403)
    with app.app_context():
        assert count(app, Lead) == 1


def test_the_tokens_page_shows_a_token_once_and_keeps_only_its_hash(app, client, frozen):
    sign_in_as(app, client, Role.MARKETER)
    token = csrf_token(client, "/account/tokens")
    r = client.post("/account/tokens", data={"csrf_token": token, "name": "CRM", "scope": "read"})
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    secret = html.split('id="new-token" type="text" readonly value="')[1].split('"')[0]
    assert secret.startswith("lk_") and len(secret) > 40
    assert "shown this once" in html
    with app.app_context():
        row = db.session.execute(select(ApiToken)).scalar_one()
        assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in repr(db.session.execute(select(ApiToken.__table__)).all())
        assert row.prefix == secret[:11] and row.last_used_at is None
        public_id = row.public_id
    later = client.get("/account/tokens").get_data(as_text=True)
    assert secret not in later and f"{secret[:11]}…" in later and "never" in later
    # Used: its last use shows; revoked: it stops working, and both acts are audited.
    assert client.get("/api/v1/leads", headers=bearer(secret)).status_code == 200
    with app.app_context():
        assert db.session.execute(select(ApiToken.last_used_at)).scalar_one() == T0
    r = client.post(f"/account/tokens/{public_id}/revoke", data={"csrf_token": token})
    assert r.status_code == 303
    assert "is revoked" in page_text(client.get("/account/tokens"))
    is_problem(client.get("/api/v1/leads", headers=bearer(secret)), 401)
    assert audit_actions(app, public_id) == ["api_token.create", "api_token.revoke"]


def test_nobody_revokes_another_users_token_and_names_are_checked(app, client):
    with app.app_context():
        make_api_token("other@example.com")
        other = db.session.execute(select(ApiToken.public_id)).scalar_one()
    sign_in_as(app, client, Role.ADMIN)
    token = csrf_token(client, "/account/tokens")
    assert (
        client.post(f"/account/tokens/{other}/revoke", data={"csrf_token": token}).status_code
        == 404
    )
    r = client.post("/account/tokens", data={"csrf_token": token, "name": "", "scope": "write"})
    assert r.status_code == 400
    r = client.post("/account/tokens", data={"csrf_token": token, "name": "x", "scope": "all"})
    assert r.status_code == 400
    with app.app_context():
        assert db.session.execute(select(ApiToken.revoked_at)).scalar_one() is None
        assert count(app, ApiToken) == 1


# --- Errors


def test_bad_requests_get_a_clear_problem_and_change_nothing(app, client, writer):
    h = bearer(writer)
    r = client.post(
        "/api/v1/subscribe", data="{not json", content_type="application/json", headers=h
    )
    assert is_problem(r, 400)["detail"] == "The body is not valid JSON."
    r = client.post("/api/v1/subscribe", data={"email": "a@example.com"}, headers=h)
    assert "application/json" in is_problem(r, 415)["detail"]
    r = client.post("/api/v1/subscribe", json={**SIGNUP, "admin": True}, headers=h)
    assert is_problem(r, 422)["errors"] == {"admin": ["Unknown field."]}
    r = client.post(
        "/api/v1/subscribe", json={"email": "not an address", "topics": ["x"]}, headers=h
    )
    errors = is_problem(r, 422)["errors"]
    assert set(errors) == {"consent_text", "topics.0"}
    r = client.post("/api/v1/subscribe", json={**SIGNUP, "email": "not an address"}, headers=h)
    assert set(is_problem(r, 422)["errors"]) == {"email"}
    r = client.post("/api/v1/subscribe", json={**SIGNUP, "name": "A\x00B"}, headers=h)
    assert is_problem(r, 422)["errors"]["name"] == ["Control characters are not allowed."]
    r = client.post("/api/v1/subscribe", json=[SIGNUP], headers=h)
    is_problem(r, 422)
    big = {**SIGNUP, "consent_text": "x" * 70_000}
    assert (
        "65536 bytes"
        in is_problem(client.post("/api/v1/subscribe", json=big, headers=h), 413)["detail"]
    )
    assert "/api/v1/docs" in is_problem(client.get("/api/v1/nowhere", headers=h), 404)["detail"]
    r = client.put("/api/v1/subscribe", json=SIGNUP, headers=h)
    assert is_problem(r, 405) and set(r.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    is_problem(client.get("/api/v1/leads/no-such-lead", headers=h), 404)
    with app.app_context():
        assert count(app, Lead) == count(app, ConsentEvent) == count(app, OutboxMessage) == 0
        assert audit_actions(app) == ["api_token.create"]


def test_a_bad_filter_or_cursor_is_a_422_naming_it(app, client, writer):
    h = bearer(writer)
    for query, field in [
        ("status=gone", "status"),
        ("since=0001-01-01", "since"),
        ("since=2026-02-01&until=2026-01-01", "'since': ['since is after until']"),
        ("cursor=garbage", "cursor"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("topic=x", "topic"),
        ("stauts=confirmed", "stauts"),
    ]:
        body = is_problem(client.get(f"/api/v1/leads?{query}", headers=h), 422)
        assert field in str(body["errors"]), (query, body)


# --- Leads


def test_leads_are_filtered_and_paged_with_a_cursor(app, client, writer, frozen):
    with app.app_context():
        for i in range(5):
            make_lead(f"l{i}@example.com", created_at=T0.replace(day=1 + i))
        make_lead("gone@example.com", status=LeadStatus.UNSUBSCRIBED)
        db.session.commit()
    seen, cursor = [], ""
    for _ in range(3):
        r = client.get(
            f"/api/v1/leads?status=confirmed&limit=2&cursor={cursor}", headers=bearer(writer)
        )
        page = r.get_json()
        assert r.status_code == 200 and page["total"] == 5 and not page["total_capped"]
        seen += [lead["email"] for lead in page["leads"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"l{i}@example.com" for i in (4, 3, 2, 1, 0)]
    one = client.get("/api/v1/leads?q=l3&sort=email", headers=bearer(writer)).get_json()["leads"]
    assert [lead["email"] for lead in one] == ["l3@example.com"]
    lead = client.get(f"/api/v1/leads/{one[0]['id']}", headers=bearer(writer)).get_json()
    assert lead["status"] == "confirmed" and lead["topics"] == ["cspo-classes"]
    assert lead["created_at"] == "2026-11-04T12:00:00+00:00"
    r = client.get("/api/v1/leads", headers=bearer(writer))
    assert r.headers["Cache-Control"] == "no-store" and "Set-Cookie" not in r.headers


def test_subscribe_is_the_forms_double_opt_in_with_the_api_as_evidence(app, client, writer):
    h = {**bearer(writer), "User-Agent": "CRM-sync/2.0"}
    body = {**SIGNUP, "name": "Ann", "source_url": "https://crm.example/forms/7"}
    r = client.post(
        "/api/v1/subscribe", json=body, headers=h, environ_base={"REMOTE_ADDR": "203.0.113.9"}
    )
    assert (r.status_code, r.get_json()) == (202, {"accepted": True})
    with app.app_context():
        lead = db.session.execute(select(Lead)).scalar_one()
        assert (lead.email, lead.status, lead.name) == (
            "ann@example.com",
            LeadStatus.PENDING,
            "Ann",
        )
        assert lead.source_placement == "api" and lead.referrer == body["source_url"]
        event = db.session.execute(select(ConsentEvent)).scalar_one()
        token_id = db.session.execute(select(ApiToken.id)).scalar_one()
        assert (event.channel, event.ip, event.user_agent) == ("api", "203.0.113.9", "CRM-sync/2.0")
        assert event.api_token_id == token_id
        assert db.session.get(ConsentText, event.consent_hash).text == CONSENT
        mails = db.session.execute(select(OutboxMessage.kind)).scalars().all()
        assert sorted(m.value for m in mails) == ["confirm_reminder", "confirmation"]
    # Again at once: the same answer, and no second mail (one per window).
    assert client.post("/api/v1/subscribe", json=body, headers=h).status_code == 202
    with app.app_context():
        kinds = db.session.execute(select(OutboxMessage.kind, OutboxMessage.status)).all()
        assert sorted((k.value, s.value) for k, s in kinds if k.value == "confirmation") == [
            ("confirmation", "queued"),
            ("confirmation", "skipped"),
        ]
        assert audit_actions(app) == ["api_token.create", "lead.subscribe", "lead.subscribe"]


def test_topics_unsubscribe_and_erase(app, client, writer):
    with app.app_context():
        lead = subscribed_lead("lead@example.com", ("newsletter",)).public_id
    h = bearer(writer)
    r = client.put(
        f"/api/v1/leads/{lead}/topics", json={"topics": ["newsletter", "cspo-classes"]}, headers=h
    )
    assert r.get_json()["result"] == "saved"
    assert r.get_json()["lead"]["topics"] == ["cspo-classes", "newsletter"]
    r = client.post(f"/api/v1/leads/{lead}/unsubscribe", headers=h)
    assert r.status_code == 200 and r.get_json()["status"] == "unsubscribed"
    assert client.post(f"/api/v1/leads/{lead}/unsubscribe", headers=h).status_code == 200
    with app.app_context():
        kinds = db.session.execute(
            select(ConsentEvent.kind, ConsentEvent.channel, ConsentEvent.api_token_id).order_by(
                ConsentEvent.id
            )
        ).all()
        assert [(k.value, c, t is not None) for k, c, t in kinds] == [
            ("given", "form", False),
            ("topics_changed", "api", True),
            ("withdrawn", "api", True),
        ]
    assert client.delete(f"/api/v1/leads/{lead}", headers=h).status_code == 204
    is_problem(client.delete(f"/api/v1/leads/{lead}", headers=h), 404)
    with app.app_context():
        assert count(app, Lead) == 0 and count(app, Suppression) == 1
        assert audit_actions(app, lead) == ["lead.topics", "lead.unsubscribe", "lead.erase"]
        details = db.session.execute(
            select(AuditEvent.details).where(AuditEvent.action == "lead.erase")
        ).scalar_one()
        assert details["via"] == "api" and details["token"]
        assert db.session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one() == 0
