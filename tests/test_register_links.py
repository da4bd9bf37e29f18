"""Tracked register links: /register/<token> counts the click (with the lead
when it came from a mail) and redirects only to that class's own
registration URL, read from the database: never an open redirect."""

from __future__ import annotations

import base64
import json
import re
from datetime import date, time
from email import message_from_bytes, policy

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from extensions import db
from models import ClassClick, ClassStatus, Lead, SignupStatsDaily
from services import tokens
from services.campaigns import classes as classes_service
from services.content import TRAINING_PATH
from services.reporting import dashboard
from tests.factories import SEPT_2026, make_class, make_lead
from tests.helpers import (
    class_form,
    count,
    create_announcement,
    csrf_token,
    drain,
    mail_files,
    page_text,
    sign_in_admin,
)

URL = "https://tickets.example.org/cspo-october?ref=site&lang=en#seats"
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"


@pytest.fixture
def classes(app, frozen) -> dict[str, str]:
    """Public ids: A with a registration URL, B with another, C with none."""
    frozen.set(SEPT_2026)
    with app.app_context():
        a = make_class(
            title="Class A", start=(date(2026, 10, 12), time(9, 0)), registration_url=URL
        )
        b = make_class(
            title="Class B",
            start=(date(2026, 10, 19), time(9, 0)),
            registration_url="https://other.example.org/b",
        )
        c = make_class(
            title="Class C", start=(date(2026, 10, 26), time(9, 0)), registration_url=None
        )
        db.session.commit()
        return {"A": a.public_id, "B": b.public_id, "C": c.public_id}


def token_for(app, public_id: str, lead_email: str | None = None, via: str = "page") -> str:
    with app.app_context():
        cls = classes_service.class_by_public_id(public_id)
        lead = None
        if lead_email:
            lead = db.session.execute(select(Lead).where(Lead.email == lead_email)).scalar_one()
        return classes_service.register_token(cls, lead, via)


def clicks(app) -> list[tuple[str, str | None, str]]:
    with app.app_context():
        rows = db.session.execute(
            select(ClassClick.training_class_id, ClassClick.lead_id, ClassClick.via).order_by(
                ClassClick.id
            )
        ).all()
        out = []
        for class_id, lead_id, via in rows:
            cls = db.session.get(classes_service.TrainingClass, class_id)
            lead = db.session.get(Lead, lead_id) if lead_id else None
            out.append((cls.title, lead.email if lead else None, via))
        return out


def total_clicks(app) -> int:
    with app.app_context():
        return sum(db.session.execute(select(SignupStatsDaily.clicks)).scalars().all())


# --- The button on the training page.


def test_page_button_counts_a_click_and_redirects_to_exactly_the_class_url(app, client, classes):
    html = page_text(client.get(TRAINING_PATH))
    links = re.findall(r'<a class="button" href="(/register/[^"]+)"', html)
    assert len(links) == 2  # A and B; C has no registration URL

    r = client.get(links[0])
    assert r.status_code == 302
    assert r.headers["Location"] == URL
    assert clicks(app) == [("Class A", None, "page")]

    # Counted for the dashboard's funnel, against the training page.
    with app.app_context():
        rows = {row.key: row for row in dashboard.funnel_by_article()}
    assert rows["certified-scrum-product-owner-cspo-training"].clicks == 1

    r = client.get(links[1])
    assert r.headers["Location"] == "https://other.example.org/b"
    assert total_clicks(app) == 2


def test_link_from_a_mail_counts_the_click_for_that_lead(app, client, classes):
    sign_in_admin(app, client)
    with app.app_context():
        make_lead("ann@example.com", source_slug="cspo-certification-benefits")
        db.session.commit()
    public_id = create_announcement(
        client, training_class=classes["A"], body="Join {{ class.title }}."
    )
    token = csrf_token(client, f"/admin/announcements/{public_id}")
    client.post(
        f"/admin/announcements/{public_id}/schedule",
        data={"csrf_token": token, "send_now": "1", "timezone": "UTC"},
    )
    assert drain(app)["sent"] == 1
    (path,) = mail_files(app)
    msg = message_from_bytes(path.read_bytes(), policy=policy.default)
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    link = re.search(r"Register: (http://localhost/register/\S+)", text).group(1)
    assert f'href="{link}"' in html  # the button in the HTML part is the same link

    with client.session_transaction() as session:
        session.clear()  # a reader, not the admin
    # The reader's mail gateway opens every link first, and a HEAD now and
    # then: sent on to the class's page, counted for nobody.
    for agent in ("Mimecast URL Protect", "Barracuda Sentinel", "Proofpoint", ""):
        r = client.get(link.removeprefix("http://localhost"), headers={"User-Agent": agent})
        assert (r.status_code, r.headers["Location"]) == (302, URL), agent
    r = client.head(link.removeprefix("http://localhost"), headers={"User-Agent": BROWSER})
    assert (r.status_code, r.headers["Location"]) == (302, URL)
    assert clicks(app) == []
    assert total_clicks(app) == 0

    r = client.get(link.removeprefix("http://localhost"), headers={"User-Agent": BROWSER})
    assert r.status_code == 302
    assert r.headers["Location"] == URL
    assert clicks(app) == [("Class A", "ann@example.com", "announcement")]
    with app.app_context():
        rows = {row.key: row for row in dashboard.funnel_by_article()}
    assert rows["cspo-certification-benefits"].clicks == 1


# --- Tampering and forgery.


def _flip(token: str, index: int) -> str:
    ch = token[index]
    return token[:index] + ("A" if ch != "A" else "B") + token[index + 1 :]


def test_tampered_tokens_are_refused_with_400_and_count_nothing(app, client, classes):
    good = token_for(app, classes["A"])
    payload, stamp, signature = good.split(".")
    forged_value = (
        base64.urlsafe_b64encode(json.dumps([classes["B"], None, "page"]).encode())
        .decode()
        .rstrip("=")
    )
    with app.app_context():
        wrong_purpose = tokens.make("unsubscribe", classes["A"])
    other_key = URLSafeTimedSerializer("not-our-key", salt="leads.register").dumps(
        [classes["A"], None, "page"]
    )
    bad = {
        "flipped payload": _flip(good, 3),
        "flipped signature": _flip(good, len(good) - 3),
        "swapped payload": f"{forged_value}.{stamp}.{signature}",
        "truncated": good[:-6],
        "no signature": payload,
        "other purpose": wrong_purpose,
        "other key": other_key,
        "garbage": "not-a-token",
        "too long": "a" * 600,
    }
    for name, token in bad.items():
        r = client.get(f"/register/{token}")
        assert r.status_code == 400, name
        assert "Location" not in r.headers, name
    assert clicks(app) == []
    assert total_clicks(app) == 0


def test_the_token_carries_no_url_and_cannot_point_elsewhere(app, client, classes):
    token = token_for(app, classes["A"])
    value = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert value == [classes["A"], None, "page"]
    assert "http" not in json.dumps(value)

    # The admin changes class A's link: the same old token follows the row.
    sign_in_admin(app, client)
    form_token = csrf_token(client, f"/admin/classes/{classes['A']}")
    r = client.post(
        f"/admin/classes/{classes['A']}",
        data=class_form(
            form_token,
            title="Class A",
            start_date="2026-10-12",
            end_date="2026-10-12",
            registration_url="https://tickets.example.org/moved",
        ),
    )
    assert r.status_code == 303
    r = client.get(f"/register/{token}?next=https://evil.example/&url=https://evil.example/")
    assert r.headers["Location"] == "https://tickets.example.org/moved"

    # Even a correctly signed token with a URL where the class id goes, or in
    # the "via" slot, never redirects there.
    with app.app_context():
        url_as_class = tokens.make("register", ["https://evil.example/", None, "page"])
        url_as_via = tokens.make("register", [classes["A"], None, "https://evil.example/"])
        just_a_url = tokens.make("register", "https://evil.example/")
    r = client.get(f"/register/{url_as_class}")
    assert r.status_code == 410 and "Location" not in r.headers
    r = client.get(f"/register/{url_as_via}")
    assert r.headers["Location"] == "https://tickets.example.org/moved"
    r = client.get(f"/register/{just_a_url}")
    assert r.status_code == 400


def test_class_without_registration_url_or_cancelled_gives_a_410_page(app, client, classes):
    r = client.get(f"/register/{token_for(app, classes['C'])}")
    assert r.status_code == 410
    html = page_text(r)
    assert "Registration is closed" in html
    assert "This class is no longer open for registration." in html
    assert "Location" not in r.headers

    # A link in an older mail, after the class was cancelled.
    token = token_for(app, classes["A"], via="announcement")
    with app.app_context():
        classes_service.class_by_public_id(classes["A"]).status = ClassStatus.CANCELLED
        db.session.commit()
    r = client.get(f"/register/{token}")
    assert r.status_code == 410
    assert "This class was cancelled." in page_text(r)
    assert count(app, ClassClick) == 0


def test_registration_urls_that_could_mislead_are_refused_when_saved(app, client, frozen):
    frozen.set(SEPT_2026)
    sign_in_admin(app, client)
    token = csrf_token(client, "/admin/classes/new")
    for url, message in [
        ("https://tickets.example.org@evil.example/", "must not contain a user name"),
        ("https://tickets.example.org/a\r\nSet-Cookie: x=1", "must not contain spaces"),
        ("https://tickets.example.org/a b", "must not contain spaces"),
        ("data:text/html,hi", "must be a full https:// address"),
    ]:
        r = client.post("/admin/classes/new", data=class_form(token, registration_url=url))
        assert r.status_code == 400, url
        assert message in page_text(r), url
    assert count(app, classes_service.TrainingClass) == 0

    # Non-ASCII is kept, percent-encoded, so the Location header stays valid.
    r = client.post(
        "/admin/classes/new",
        data=class_form(token, registration_url="https://tickets.example.org/kurs/München?p=€"),
    )
    assert r.status_code == 303
    with app.app_context():
        cls = db.session.execute(select(classes_service.TrainingClass)).scalar_one()
        assert cls.registration_url == "https://tickets.example.org/kurs/M%C3%BCnchen?p=%E2%82%AC"
        public_id = cls.public_id
    r = client.get(f"/register/{token_for(app, public_id)}")
    assert r.headers["Location"] == "https://tickets.example.org/kurs/M%C3%BCnchen?p=%E2%82%AC"
