"""Double opt-in, preferences and unsubscribe: the links in the mail."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from extensions import db
from models import ConsentEvent, ConsentKind, LeadStatus, MailKind, OutboxMessage
from services import tokens
from services.delivery.worker import Worker
from services.leads.subscriptions import confirm_token, preferences_token, unsubscribe_token
from tests.helpers import confirm, count, mail_files, signup, the_lead

EMAIL = "ann@example.com"


class _Forms(HTMLParser):
    """Each <form>: its action and the name/value of its inputs and buttons."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "fields": {}, "buttons": []})
        elif tag == "input" and self.forms and a.get("type") in ("hidden", None, "text"):
            self.forms[-1]["fields"][a.get("name")] = a.get("value") or ""
        elif tag == "input" and self.forms and a.get("type") == "checkbox" and "checked" in a:
            self.forms[-1]["fields"].setdefault(a["name"], [])
            self.forms[-1]["fields"][a["name"]].append(a["value"])
        elif tag == "button" and self.forms:
            self.forms[-1]["buttons"].append(a)


def forms_of(page: str) -> list[dict]:
    parser = _Forms()
    parser.feed(page)
    return parser.forms


def mails(app, kind: MailKind) -> int:
    return count(app, OutboxMessage, OutboxMessage.kind == kind)


def events(app, kind: ConsentKind) -> list[ConsentEvent]:
    with app.app_context():
        rows = db.session.execute(
            select(ConsentEvent).where(ConsentEvent.kind == kind).order_by(ConsentEvent.id)
        ).scalars()
        return [db.session.expunge(r) or r for r in rows]


def token_for(app, purpose: str, email: str = EMAIL) -> str:
    make = {"confirm": confirm_token, "preferences": preferences_token}
    make["unsubscribe"] = unsubscribe_token
    with app.app_context():
        return make[purpose](the_lead(app, email))


def new_lead(client, app, email: str = EMAIL, topics=("cspo-classes",)) -> None:
    assert signup(client, email, topics=topics).status_code == 303


def confirmed_lead(client, app, email: str = EMAIL, topics=("cspo-classes",)) -> None:
    new_lead(client, app, email, topics)
    r = confirm(client, token_for(app, "confirm", email))
    assert r.status_code == 200
    assert "You're in" in r.get_data(as_text=True)


def friendly(page: str) -> None:
    assert 'class="site-header"' in page
    assert "Traceback" not in page


# --- Confirmation


def test_the_link_in_the_delivered_mail_confirms(app, client):
    new_lead(client, app, topics=("cspo-classes", "newsletter"))
    with app.app_context():
        assert Worker(app).run(once=True).sent >= 1
    (eml,) = mail_files(app)
    msg = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert msg["To"] == EMAIL
    link = re.search(r"http://localhost(/confirm/\S+)", msg.get_body(("plain",)).get_content())[1]
    html_body = msg.get_body(("html",)).get_content()
    assert f'href="http://localhost{link}"' in html_body

    # Opening the link (a person, or a mail filter) changes nothing: it shows
    # the address, the topics and one button, a form posting to the link.
    for _ in range(2):
        r = client.get(link, environ_base={"REMOTE_ADDR": "203.0.113.9"})
        assert r.status_code == 200
        assert r.headers["Cache-Control"] == "private, no-store"
        page = r.get_data(as_text=True)
        friendly(page)
        assert f"<strong>{EMAIL}</strong>" in page
        assert "<li>CSPO class announcements</li>" in page and "<li>Newsletter</li>" in page
        assert "You're in" not in page
    assert client.head(link).status_code == 200
    (form,) = forms_of(page)
    assert form["action"] == link
    assert form["fields"] == {}  # no CSRF token: the link's token is the capability
    assert len(form["buttons"]) == 1
    assert the_lead(app, EMAIL).status == LeadStatus.PENDING
    assert events(app, ConsentKind.CONFIRMED) == []
    assert mails(app, MailKind.WELCOME) == 0

    # The button confirms, from a browser with no cookie of ours.
    button = app.test_client(use_cookies=False)
    r = button.post(form["action"], environ_base={"REMOTE_ADDR": "198.51.100.4"})
    assert r.status_code == 200
    assert "You're in" in r.get_data(as_text=True)
    assert "Set-Cookie" not in r.headers
    lead = the_lead(app, EMAIL)
    assert lead.status == LeadStatus.CONFIRMED
    assert abs(lead.confirmed_at - datetime.now(UTC)) < timedelta(minutes=1)
    (event,) = events(app, ConsentKind.CONFIRMED)
    assert event.ip == "198.51.100.4"
    assert event.channel == "link"
    assert set(event.topics.split(",")) == {"cspo-classes", "newsletter"}
    assert mails(app, MailKind.WELCOME) == 1


def test_confirming_twice_changes_nothing(app, client):
    new_lead(client, app)
    link = f"/confirm/{token_for(app, 'confirm')}"
    assert "You're in" in confirm(client, link).get_data(as_text=True)
    first = the_lead(app, EMAIL).confirmed_at
    # A second click on the button (a page kept open), and the link opened again.
    for r in (client.post(link), client.get(link)):
        assert r.status_code == 200
        assert "already confirmed" in r.get_data(as_text=True)
    assert the_lead(app, EMAIL).confirmed_at == first
    assert mails(app, MailKind.WELCOME) == 1
    assert len(events(app, ConsentKind.CONFIRMED)) == 1


def test_the_confirmed_page_links_to_working_preferences(app, client):
    new_lead(client, app)
    page = confirm(client, token_for(app, "confirm")).get_data(as_text=True)
    prefs = re.search(r'href="(/preferences/[^"]+)"', page)[1]
    assert client.get(prefs).status_code == 200


def test_an_expired_link_offers_a_new_one_that_works(app, client, frozen):
    new_lead(client, app)
    old = token_for(app, "confirm")
    frozen.advance(app.config["CONFIRMATION_MAX_AGE_SECONDS"] + 1)

    # The same page whether the link is opened or its button posted.
    assert client.post(f"/confirm/{old}").status_code == 410
    r = client.get(f"/confirm/{old}")
    assert r.status_code == 410
    page = r.get_data(as_text=True)
    friendly(page)
    assert "This link has expired" in page
    assert ">Send me a new link</button>" in page
    assert the_lead(app, EMAIL).status == LeadStatus.PENDING

    (form,) = forms_of(page)
    assert form["action"] == "/confirm/resend"
    assert set(form["fields"]) == {"token"}  # no CSRF token
    r = client.post(form["action"], data=form["fields"])
    assert r.status_code == 303
    assert r.headers["Location"].endswith("/subscribe/thanks")
    assert mails(app, MailKind.CONFIRMATION) == 2

    fresh = token_for(app, "confirm")
    assert client.get(f"/confirm/{fresh}").status_code == 200
    assert the_lead(app, EMAIL).status == LeadStatus.PENDING
    assert "You're in" in confirm(client, fresh).get_data(as_text=True)
    assert the_lead(app, EMAIL).status == LeadStatus.CONFIRMED


def test_resend_within_the_window_sends_nothing_more(app, client, frozen):
    new_lead(client, app)
    old = token_for(app, "confirm")
    frozen.advance(app.config["CONFIRMATION_MAX_AGE_SECONDS"] + 1)
    (form,) = forms_of(client.get(f"/confirm/{old}").get_data(as_text=True))
    for _ in range(3):
        assert client.post(form["action"], data=form["fields"]).status_code == 303
    assert mails(app, MailKind.CONFIRMATION) == 2


def test_an_expired_link_of_a_confirmed_lead_says_it_is_confirmed(app, client, frozen):
    new_lead(client, app)
    old = token_for(app, "confirm")
    assert "You're in" in confirm(client, old).get_data(as_text=True)
    frozen.advance(app.config["CONFIRMATION_MAX_AGE_SECONDS"] + 1)
    for r in (client.get(f"/confirm/{old}"), client.post(f"/confirm/{old}")):
        assert r.status_code == 200
        assert "already confirmed" in r.get_data(as_text=True)


def test_resend_with_a_tampered_token_is_refused(app, client):
    new_lead(client, app)
    r = client.post("/confirm/resend", data={"token": "x.y.z"})
    assert r.status_code == 400
    friendly(r.get_data(as_text=True))
    assert mails(app, MailKind.CONFIRMATION) == 1


def tampered(token: str) -> list[str]:
    # Flip a character inside the signature, not its last one: the last
    # base64 character carries padding bits, and some flips decode the same.
    i = len(token) - 6
    flip = "A" if token[i] != "A" else "B"
    return [
        token[:i] + flip + token[i + 1 :],
        token[:-5],
        token + "x",
        "not-a-token",
        token.replace(".", "", 1),
    ]


def test_a_tampered_link_gets_a_friendly_400(app, client):
    new_lead(client, app)
    for bad in tampered(token_for(app, "confirm")):
        for r in (client.get(f"/confirm/{bad}"), client.post(f"/confirm/{bad}")):
            assert r.status_code == 400, bad
            page = r.get_data(as_text=True)
            friendly(page)
            assert "This link does not work" in page
            assert '<form class="signup"' in page
    assert the_lead(app, EMAIL).status == LeadStatus.PENDING
    assert mails(app, MailKind.WELCOME) == 0


def test_a_token_for_another_purpose_is_refused(app, client):
    confirmed_lead(client, app, "other@example.com")
    new_lead(client, app)
    prefs, pending_confirm = token_for(app, "preferences"), token_for(app, "confirm")
    for wrong in (prefs, token_for(app, "unsubscribe")):
        assert client.get(f"/confirm/{wrong}").status_code == 400
        assert client.post(f"/confirm/{wrong}").status_code == 400
    assert the_lead(app, EMAIL).status == LeadStatus.PENDING

    other_confirm = token_for(app, "confirm", "other@example.com")
    assert client.get(f"/unsubscribe/{other_confirm}").status_code == 400
    assert client.post(f"/unsubscribe/{other_confirm}").status_code == 400
    assert client.get(f"/preferences/{pending_confirm}").status_code == 400
    assert the_lead(app, "other@example.com").status == LeadStatus.CONFIRMED
    assert events(app, ConsentKind.WITHDRAWN) == []


def test_a_link_for_an_erased_lead_says_nothing_is_held(app, client):
    with app.app_context():
        gone = {p: tokens.make(p, "no-such-public-id") for p in ("preferences", "unsubscribe")}
    for path in (f"/preferences/{gone['preferences']}", f"/unsubscribe/{gone['unsubscribe']}"):
        r = client.get(path)
        assert r.status_code == 404
        assert "We hold nothing for this link" in r.get_data(as_text=True)
    # A one-click client must read success: the address gets nothing more.
    r = app.test_client(use_cookies=False).post(
        f"/unsubscribe/{gone['unsubscribe']}", data={"List-Unsubscribe": "One-Click"}
    )
    assert r.status_code == 200
    assert "We hold nothing for this link" in r.get_data(as_text=True)


def test_a_key_in_secret_key_fallbacks_still_opens_links(app, client):
    new_lead(client, app)
    app.config["SECRET_KEY"] = "old-key"
    old_link = f"/confirm/{token_for(app, 'confirm')}"
    app.config["SECRET_KEY"] = "new-key"

    app.config["SECRET_KEY_FALLBACKS"] = []
    assert client.get(old_link).status_code == 400
    assert client.post(old_link).status_code == 400
    assert the_lead(app, EMAIL).status == LeadStatus.PENDING

    app.config["SECRET_KEY_FALLBACKS"] = ["old-key"]
    assert "You're in" in confirm(client, old_link).get_data(as_text=True)
    assert the_lead(app, EMAIL).status == LeadStatus.CONFIRMED
    # New links are signed with the current key only.
    new_link = token_for(app, "unsubscribe")
    app.config["SECRET_KEY_FALLBACKS"] = []
    assert client.get(f"/unsubscribe/{new_link}").status_code == 200


# --- Preferences


def test_preferences_change_topics_and_record_it(app, client):
    confirmed_lead(client, app, topics=("cspo-classes",))
    url = f"/preferences/{token_for(app, 'preferences')}"
    page = client.get(url).get_data(as_text=True)
    (form,) = forms_of(page)
    assert form["fields"]["topics"] == ["cspo-classes"]
    assert {b.get("name") for b in form["buttons"]} == {"save", "unsubscribe_all"}

    data = {**form["fields"], "topics": ["newsletter"], "save": "1"}
    r = client.post(url, data=data, environ_base={"REMOTE_ADDR": "192.0.2.5"})
    assert r.status_code == 200
    assert "Your choices are saved" in r.get_data(as_text=True)
    lead = the_lead(app, EMAIL)
    assert lead.topic_slugs == {"newsletter"}
    assert lead.status == LeadStatus.CONFIRMED
    (event,) = events(app, ConsentKind.TOPICS_CHANGED)
    assert (event.topics, event.channel, event.ip) == ("newsletter", "preferences", "192.0.2.5")
    # The page shows what is saved now.
    assert forms_of(client.get(url).get_data(as_text=True))[0]["fields"]["topics"] == ["newsletter"]


def test_saving_the_same_topics_records_nothing(app, client):
    confirmed_lead(client, app, topics=("cspo-classes",))
    url = f"/preferences/{token_for(app, 'preferences')}"
    (form,) = forms_of(client.get(url).get_data(as_text=True))
    assert client.post(url, data={**form["fields"], "save": "1"}).status_code == 200
    assert events(app, ConsentKind.TOPICS_CHANGED) == []


def test_preferences_post_without_csrf_token_is_refused(app, client):
    confirmed_lead(client, app)
    url = f"/preferences/{token_for(app, 'preferences')}"
    r = app.test_client().post(url, data={"topics": ["newsletter"], "save": "1"})
    assert r.status_code == 400
    friendly(r.get_data(as_text=True))
    assert the_lead(app, EMAIL).topic_slugs == {"cspo-classes"}


@pytest.mark.parametrize("how", ["button", "no topics left"])
def test_unsubscribe_from_everything(app, client, how):
    confirmed_lead(client, app, topics=("cspo-classes", "newsletter"))
    url = f"/preferences/{token_for(app, 'preferences')}"
    (form,) = forms_of(client.get(url).get_data(as_text=True))
    if how == "button":
        data = {**form["fields"], "unsubscribe_all": "1"}
    else:
        data = {"csrf_token": form["fields"]["csrf_token"], "save": "1"}
    r = client.post(url, data=data)
    assert r.status_code == 200
    assert "unsubscribed from everything" in r.get_data(as_text=True)
    lead = the_lead(app, EMAIL)
    assert lead.status == LeadStatus.UNSUBSCRIBED
    assert lead.unsubscribed_at is not None
    (event,) = events(app, ConsentKind.WITHDRAWN)
    assert event.channel == "preferences"


def test_picking_topics_again_after_unsubscribing_asks_to_confirm(app, client):
    confirmed_lead(client, app)
    url = f"/preferences/{token_for(app, 'preferences')}"
    (form,) = forms_of(client.get(url).get_data(as_text=True))
    client.post(url, data={**form["fields"], "unsubscribe_all": "1"})
    page = client.get(url).get_data(as_text=True)
    assert "You are unsubscribed" in page
    (form,) = forms_of(page)
    r = client.post(url, data={**form["fields"], "topics": ["newsletter"], "save": "1"})
    assert r.status_code == 200
    assert "sent you a link to confirm" in r.get_data(as_text=True)
    assert the_lead(app, EMAIL).status == LeadStatus.PENDING
    assert mails(app, MailKind.CONFIRMATION) == 2


# --- Unsubscribe


def test_get_unsubscribe_never_unsubscribes(app, client):
    confirmed_lead(client, app)
    url = f"/unsubscribe/{token_for(app, 'unsubscribe')}"
    for _ in range(3):
        r = client.get(url)
        assert r.status_code == 200
    assert client.head(url).status_code == 200
    page = r.get_data(as_text=True)
    (form,) = forms_of(page)
    assert form["action"] == url
    assert len(form["buttons"]) == 1
    assert the_lead(app, EMAIL).status == LeadStatus.CONFIRMED
    assert events(app, ConsentKind.WITHDRAWN) == []


def test_the_button_unsubscribes(app, client):
    confirmed_lead(client, app)
    url = f"/unsubscribe/{token_for(app, 'unsubscribe')}"
    (form,) = forms_of(client.get(url).get_data(as_text=True))
    r = client.post(form["action"], data=form["fields"])
    assert r.status_code == 200
    assert "Location" not in r.headers
    assert "You are unsubscribed" in r.get_data(as_text=True)
    assert the_lead(app, EMAIL).status == LeadStatus.UNSUBSCRIBED
    (event,) = events(app, ConsentKind.WITHDRAWN)
    assert event.channel == "link"
    # Again: still 200, still one withdrawal on record.
    assert client.post(url).status_code == 200
    assert len(events(app, ConsentKind.WITHDRAWN)) == 1
    assert "already unsubscribed" in client.get(url).get_data(as_text=True)


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_rfc8058_one_click_post(app, client, encoding):
    confirmed_lead(client, app)
    url = f"/unsubscribe/{token_for(app, 'unsubscribe')}"
    provider = app.test_client(use_cookies=False)
    if encoding == "urlencoded":
        r = provider.post(
            url,
            data="List-Unsubscribe=One-Click",
            content_type="application/x-www-form-urlencoded",
        )
    else:
        r = provider.post(
            url, data={"List-Unsubscribe": "One-Click"}, content_type="multipart/form-data"
        )
    assert r.status_code == 200
    assert "Location" not in r.headers
    assert "Set-Cookie" not in r.headers or "session=" not in r.headers["Set-Cookie"]
    assert the_lead(app, EMAIL).status == LeadStatus.UNSUBSCRIBED
    (event,) = events(app, ConsentKind.WITHDRAWN)
    assert event.channel == "one-click"


def test_one_click_is_not_rate_limited_like_signups(app, client):
    app.config["SIGNUP_RATE_LIMIT"] = "1 per minute"
    confirmed_lead(client, app)
    url = f"/unsubscribe/{token_for(app, 'unsubscribe')}"
    provider = app.test_client(use_cookies=False)
    for _ in range(3):
        assert provider.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200


def test_a_stale_confirm_link_does_not_resubscribe(app, client, frozen):
    new_lead(client, app)
    stale = f"/confirm/{token_for(app, 'confirm')}"
    frozen.advance(5)
    assert client.post(f"/unsubscribe/{token_for(app, 'unsubscribe')}").status_code == 200
    frozen.advance(5)

    # Opening it changes nothing and says at once that it no longer works.
    opened = client.get(stale)
    assert opened.status_code == 409
    assert "no longer valid" in opened.get_data(as_text=True)
    assert "Yes, confirm" not in opened.get_data(as_text=True)
    assert the_lead(app, EMAIL).status == LeadStatus.UNSUBSCRIBED
    r = client.post(stale)
    assert r.status_code == 409
    page = r.get_data(as_text=True)
    friendly(page)
    assert "no longer valid" in page
    assert the_lead(app, EMAIL).status == LeadStatus.UNSUBSCRIBED
    assert mails(app, MailKind.WELCOME) == 0

    # Signed up again: the old link still does not confirm, the new one does.
    frozen.advance(5)
    assert signup(client, EMAIL).status_code == 303
    assert the_lead(app, EMAIL).status == LeadStatus.PENDING
    assert confirm(client, stale).status_code == 409
    assert the_lead(app, EMAIL).status == LeadStatus.PENDING
    assert "You're in" in confirm(client, token_for(app, "confirm")).get_data(as_text=True)
    assert the_lead(app, EMAIL).status == LeadStatus.CONFIRMED
    assert events(app, ConsentKind.CONFIRMED)[-1].at == frozen.now
