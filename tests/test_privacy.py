"""Personal data requests for one lead: everything held, as JSON; erasure
that leaves only a hash on the suppression list. Both are audited."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import String, Text, func, inspect, select

from extensions import db
from models import (
    AuditEvent,
    ConsentEvent,
    Lead,
    LeadTopic,
    OutboxMessage,
    OutboxStatus,
    Suppression,
    email_hash,
)
from services.delivery.worker import Worker
from services.leads import consent, signup, subscriptions
from services.leads.signup import SignupRequest
from services.leads.subscriptions import Evidence
from tests.helpers import csrf_token, sign_in_as

EMAIL = "zoe@example.com"


@pytest.fixture
def staff(app, client):
    sign_in_as(app, client)
    return client


def make_lead(app, email: str = EMAIL) -> str:
    """Signed up on the training page and an article, confirmed; mail queued."""
    with app.app_context():
        signup.subscribe(
            SignupRequest(
                email=email,
                name="Zoë",
                topics=["cspo-classes"],
                placement="training",
                source_slug="certified-scrum-product-owner-cspo-training",
                utm={"utm_source": "linkedin"},
            ),
            Evidence(ip="203.0.113.7", user_agent="Mozilla/5.0 Test"),
        )
        db.session.commit()
        lead = subscriptions.lead_by_email(email)
        subscriptions.confirm(lead, lead.created_at, Evidence(ip="198.51.100.2"))
        db.session.commit()
        subscriptions.update_topics(lead, ["cspo-classes", "newsletter"], Evidence())
        db.session.commit()
        return lead.public_id


def test_data_json_holds_everything_about_the_lead(app, staff):
    public_id = make_lead(app)
    make_lead(app, "someone.else@example.com")
    r = staff.get(f"/marketing/leads/{public_id}/data.json")
    assert r.status_code == 200
    assert r.mimetype == "application/json"
    assert r.headers["Content-Disposition"] == f'attachment; filename="lead-{public_id}.json"'
    assert r.headers["Cache-Control"] == "no-store"
    data = json.loads(r.get_data(as_text=True))
    assert "Zoë" in r.get_data(as_text=True), "readable UTF-8, not \\u escapes"
    assert data["id"] == public_id
    assert data["email"] == EMAIL
    assert data["name"] == "Zoë"
    assert data["status"] == "confirmed"
    assert data["topics"] == ["cspo-classes", "newsletter"]
    assert data["source"]["article"] == "certified-scrum-product-owner-cspo-training"
    assert data["source"]["placement"] == "training"
    assert data["source"]["utm_source"] == "linkedin"
    assert data["signed_up_at"] and data["confirmed_at"]

    kinds = [e["kind"] for e in data["consent_events"]]
    assert kinds == ["given", "confirmed", "topics_changed"]
    given = data["consent_events"][0]
    assert given["consent_text"] == consent.TRAINING_TEXT
    assert given["ip"] == "203.0.113.7"
    assert given["user_agent"] == "Mozilla/5.0 Test"
    assert given["channel"] == "form"
    assert given["placement"] == "training"
    assert given["topics"] == ["cspo-classes"]
    assert data["consent_events"][1]["ip"] == "198.51.100.2"

    with app.app_context():
        lead = subscriptions.lead_by_email(EMAIL)
        mails = (
            db.session.execute(
                select(OutboxMessage)
                .where(OutboxMessage.lead_id == lead.id)
                .order_by(OutboxMessage.id)
            )
            .scalars()
            .all()
        )
    assert mails, "signing up and confirming queued mail"
    assert [(m["kind"], m["status"]) for m in data["emails"]] == [
        (m.kind.value, m.status.value) for m in mails
    ]
    assert "someone.else@example.com" not in r.get_data(as_text=True)

    with app.app_context():
        audit = db.session.execute(select(AuditEvent)).scalar_one()
        assert audit.action == "lead.data_export"
        assert audit.target == public_id
        assert audit.actor == "marketer@example.com"


def test_data_json_of_an_unknown_lead_is_404_and_not_audited(app, staff):
    assert staff.get("/marketing/leads/nobody/data.json").status_code == 404
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(AuditEvent)).scalar() == 0


def _erase(client, public_id: str, typed: str):
    token = csrf_token(client, f"/marketing/leads/{public_id}")
    return client.post(
        f"/marketing/leads/{public_id}/erase",
        data={"csrf_token": token, "confirm_email": typed},
    )


def _text_columns() -> list:
    cols = []
    for table in db.metadata.sorted_tables:
        for col in table.columns:
            if isinstance(col.type, String | Text):
                cols.append(col)
    return cols


def test_erase_removes_the_lead_and_everything_hanging_off_it(app, staff):
    public_id = make_lead(app)
    other = make_lead(app, "keep.me@example.com")
    with app.app_context():
        lead_id = subscriptions.lead_by_email(EMAIL).id
        for model in (LeadTopic, ConsentEvent, OutboxMessage):
            n = db.session.execute(
                select(func.count()).select_from(model).where(model.lead_id == lead_id)
            ).scalar()
            assert n > 0, model

    r = _erase(staff, public_id, "  ZOE@example.com ")
    assert r.status_code == 303
    assert r.headers["Location"] == "/marketing/leads"
    assert "The lead was erased." in staff.get("/marketing/leads").get_data(as_text=True)

    with app.app_context():
        assert subscriptions.lead_by_email(EMAIL) is None
        for model in (LeadTopic, ConsentEvent, OutboxMessage):
            n = db.session.execute(
                select(func.count()).select_from(model).where(model.lead_id == lead_id)
            ).scalar()
            assert n == 0, f"{model.__name__} rows of the erased lead remain"
        suppression = db.session.get(Suppression, email_hash(EMAIL))
        assert suppression is not None and suppression.reason == "erased"
        # Nothing in the database still holds the address or the name.
        for col in _text_columns():
            hits = db.session.execute(
                select(func.count()).select_from(col.table).where(col.contains(EMAIL))
            ).scalar()
            assert hits == 0, f"{col.table.name}.{col.name} still holds the address"
        names = db.session.execute(select(Lead.email).where(Lead.name == "Zoë")).scalars()
        assert list(names) == ["keep.me@example.com"]
        audit = db.session.execute(
            select(AuditEvent).where(AuditEvent.action == "lead.erase")
        ).scalar_one()
        assert audit.target == public_id
        assert audit.actor == "marketer@example.com"
        assert EMAIL not in json.dumps(audit.details)
        # The other lead is untouched.
        kept = subscriptions.lead_by_public_id(other)
        assert kept is not None and kept.consent_events and kept.topics

    assert staff.get(f"/marketing/leads/{public_id}").status_code == 404
    assert staff.post(f"/marketing/leads/{public_id}/erase").status_code in (400, 404)


def test_erase_refuses_when_the_typed_email_does_not_match(app, staff):
    public_id = make_lead(app)
    for typed in ("", "zoe@example.org", "someone@example.com", EMAIL + "x"):
        r = _erase(staff, public_id, typed)
        assert r.status_code == 303
        assert r.headers["Location"] == f"/marketing/leads/{public_id}"
        page = staff.get(r.headers["Location"]).get_data(as_text=True)
        assert "Type the lead&#39;s email address exactly" in page or (
            "Type the lead's email address exactly" in page
        )
    with app.app_context():
        assert subscriptions.lead_by_email(EMAIL) is not None
        assert db.session.get(Suppression, email_hash(EMAIL)) is None
        actions = db.session.execute(select(AuditEvent.action)).scalars().all()
        assert "lead.erase" not in actions


def test_an_erased_address_gets_no_mail_that_was_queued_before(app, staff):
    public_id = make_lead(app)
    _erase(staff, public_id, EMAIL)
    with app.app_context():
        stats = Worker(app).run(once=True)
        assert stats.sent == 0
        assert (
            db.session.execute(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status == OutboxStatus.SENT)
            ).scalar()
            == 0
        )


def test_a_person_who_subscribes_anew_after_erasure_gets_mail_again(app, staff):
    public_id = make_lead(app)
    _erase(staff, public_id, EMAIL)
    with app.app_context():
        Worker(app).run(once=True)
    make_lead(app)  # signs up again and confirms: consent anew
    with app.app_context():
        Worker(app).run(once=True)
        lead = subscriptions.lead_by_email(EMAIL)
        rows = db.session.execute(
            select(OutboxMessage.kind, OutboxMessage.status, OutboxMessage.last_error).where(
                OutboxMessage.lead_id == lead.id
            )
        ).all()
        welcome = [r for r in rows if r.kind.value == "welcome"]
        assert welcome and welcome[0].status == OutboxStatus.SENT, rows


def test_lead_page_offers_both_requests(app, staff):
    public_id = make_lead(app)
    html = staff.get(f"/marketing/leads/{public_id}").get_data(as_text=True)
    assert f'href="/marketing/leads/{public_id}/data.json"' in html
    assert re.search(rf'<form method="post" action="/marketing/leads/{public_id}/erase"', html)
    assert 'name="confirm_email"' in html


def test_every_table_with_a_lead_id_is_handled_by_erase(app):
    """A new table pointing at leads must be covered by erase (or cascade)."""
    with app.app_context():
        insp = inspect(db.engine)
        pointing = {
            t
            for t in insp.get_table_names()
            for fk in insp.get_foreign_keys(t)
            if fk["referred_table"] == "lead"
        }
    handled = {"lead_topic", "consent_event", "outbox_message"}
    cascades = {
        fk.parent.table.name
        for table in db.metadata.sorted_tables
        for fk in table.foreign_keys
        if fk.column.table.name == "lead" and fk.ondelete in ("CASCADE", "SET NULL")
    }
    assert pointing <= handled | cascades, pointing - handled - cascades
