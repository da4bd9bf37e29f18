"""POST /subscribe: what a signup stores, what it answers, and the bot defences."""

from __future__ import annotations

import hashlib
import html
import random
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from extensions import db
from models import (
    ConsentEvent,
    ConsentKind,
    ConsentText,
    Lead,
    LeadStatus,
    MailKind,
    OutboxMessage,
    OutboxStatus,
)
from services.content import TRAINING_PATH
from services.leads import consent
from services.leads.subscriptions import unsubscribe_token
from tests.helpers import (
    REDIS_URL,
    browser_headers,
    confirm_address,
    count,
    form_fields,
    mails_to_go,
    signup,
    the_lead,
)

ARTICLE = "/cspo-certification-benefits"
SLUG = "cspo-certification-benefits"


@pytest.fixture
def settings() -> dict:
    """Per-test settings: override with @pytest.mark.parametrize("settings", ...)."""
    return {}


@pytest.fixture
def app_config(app_config, settings):
    return {**app_config, **settings}


def nothing_stored(app) -> bool:
    return all(count(app, model) == 0 for model in (Lead, ConsentEvent, OutboxMessage, ConsentText))


def consent_text_shown(page: str, placement: str) -> str:
    match = re.search(rf'<p class="consent" id="consent-{placement}">(.*?)</p>', page, re.S)
    return html.unescape(match.group(1))


def unsubscribe(client, app, email: str) -> None:
    with app.app_context():
        token = unsubscribe_token(the_lead(app, email))
    assert client.post(f"/unsubscribe/{token}").status_code == 200


def assert_thanks(response) -> None:
    assert response.status_code == 303
    assert response.headers["Location"] in (
        "/subscribe/thanks",
        "http://localhost/subscribe/thanks",
    )


# --- What a signup stores


UTM_QUERY = (
    "?utm_source=linkedin&utm_medium=social&utm_campaign=cspo-q3"
    "&utm_term=product+owner&utm_content=banner"
)
UTM = {
    "utm_source": "linkedin",
    "utm_medium": "social",
    "utm_campaign": "cspo-q3",
    "utm_term": "product owner",
    "utm_content": "banner",
}
OUTSIDE = "https://www.google.com/search?q=cspo"


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
@pytest.mark.parametrize(
    ("path", "index", "placement", "source", "chosen"),
    [
        (ARTICLE, 0, "inline", SLUG, ["newsletter", "cspo-classes"]),
        (ARTICLE, 1, "end", SLUG, ["newsletter"]),
        (TRAINING_PATH, 0, "training", TRAINING_PATH.lstrip("/"), ["cspo-classes"]),
    ],
    ids=["inline", "end", "training"],
)
def test_signup_records_the_lead_and_the_consent_evidence(
    app, client, path, index, placement, source, chosen, javascript
):
    # The visitor arrives from a search, on a campaign link. The page is the
    # same for everyone: neither the UTM values nor the referrer are in it.
    r = client.get(path + UTM_QUERY, headers={"Referer": OUTSIDE})
    page = r.get_data(as_text=True)
    assert "Set-Cookie" not in r.headers
    assert "linkedin" not in page and "google" not in page
    # (The time trap's stamp moves every STAMP_SECONDS, for everyone alike.)
    unstamped = re.compile(r'name="started" value="[^"]*"')
    assert unstamped.sub("", page) == unstamped.sub("", client.get(path).get_data(as_text=True))
    fields = form_fields(page, index)
    assert fields["placement"] == placement
    assert fields["ref"] == "" and all(fields[k] == "" for k in UTM)
    if javascript:  # static/js/signup.js: document.referrer and the page's UTM values
        fields.update(ref=OUTSIDE, **UTM)
    fields.update(email="  Ann.Smith@Example.COM ", name="Ann", topics=chosen)
    # A browser posts the page's Origin, and its whole URL as the Referer.
    r = client.post(
        "/subscribe",
        data=fields,
        headers={"User-Agent": "Mozilla/5.0 (TestBrowser)", **browser_headers(path + UTM_QUERY)},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    assert_thanks(r)

    shown = consent_text_shown(page, placement)
    assert shown == consent.text_for(placement)
    with app.app_context():
        lead = db.session.execute(select(Lead)).scalar_one()
        assert lead.email == "ann.smith@example.com"
        assert lead.name == "Ann"
        assert lead.status == LeadStatus.PENDING
        assert lead.topic_slugs == set(chosen)
        assert lead.source_slug == source
        assert lead.source_placement == placement
        # From the hidden fields, or without JavaScript from the Referer.
        assert (lead.utm_source, lead.utm_medium, lead.utm_campaign) == (
            "linkedin",
            "social",
            "cspo-q3",
        )
        assert (lead.utm_term, lead.utm_content) == ("product owner", "banner")
        # The outside referrer is only known to the page's script.
        assert lead.referrer == (OUTSIDE if javascript else None)
        assert lead.created_at.tzinfo is not None
        assert len(lead.public_id) >= 16

        event = db.session.execute(select(ConsentEvent)).scalar_one()
        assert event.lead_id == lead.id
        assert event.kind == ConsentKind.GIVEN
        assert event.channel == "form"
        assert event.ip == "203.0.113.7"
        assert event.user_agent == "Mozilla/5.0 (TestBrowser)"
        assert event.consent_hash == hashlib.sha256(shown.encode("utf-8")).hexdigest()
        assert event.placement == placement
        assert event.source_slug == source
        assert set(event.topics.split(",")) == set(chosen)
        assert abs(event.at - datetime.now(UTC)) < timedelta(minutes=1)

        text = db.session.get(ConsentText, event.consent_hash)
        assert text.text == shown

        outbox = db.session.execute(select(OutboxMessage)).scalars().all()
        assert [
            m.kind
            for m in outbox
            if m.kind == MailKind.CONFIRMATION and m.status != OutboxStatus.SKIPPED
        ] == [MailKind.CONFIRMATION]
        assert all(m.lead_id == lead.id for m in outbox)


def test_utm_fields_filled_by_the_script_win_over_the_referer(app, client):
    fields = form_fields(client.get(ARTICLE).get_data(as_text=True))
    fields.update(email="a@example.com", topics=["newsletter"], utm_source="from-script")
    headers = browser_headers(f"{ARTICLE}?utm_source=from-url&utm_medium=email")
    assert_thanks(client.post("/subscribe", data=fields, headers=headers))
    lead = the_lead(app, "a@example.com")
    # Each value on its own: the script's where it filled one, else the URL's.
    assert (lead.utm_source, lead.utm_medium, lead.utm_campaign) == ("from-script", "email", None)


def test_consent_text_is_stored_once_however_many_signups(app, client):
    for i in range(3):
        assert_thanks(signup(client, f"p{i}@example.com"))
    assert count(app, ConsentText) == 1
    assert count(app, ConsentEvent) == 3


@pytest.mark.parametrize(
    "ref", [f"http://localhost{TRAINING_PATH}", "", "javascript:alert(1)", "not a url"]
)
def test_internal_referrer_and_unknown_source_are_not_recorded(app, client, ref):
    # The script copies document.referrer: here one of our own pages, or junk.
    page = client.get(ARTICLE, headers={"Referer": f"http://localhost{TRAINING_PATH}"})
    fields = form_fields(page.get_data(as_text=True))
    assert fields["ref"] == ""
    fields.update(email="a@example.com", topics=["newsletter"], source="no-such-article", ref=ref)
    assert_thanks(client.post("/subscribe", data=fields, headers=browser_headers(ARTICLE)))
    lead = the_lead(app, "a@example.com")
    assert lead.referrer is None
    assert lead.source_slug is None


def test_the_training_form_subscribes_to_class_dates_only(app, client):
    # Its consent text promises class dates; a crafted POST cannot add more.
    r = signup(client, "t@example.com", path=TRAINING_PATH, topics=["newsletter", "cspo-classes"])
    assert_thanks(r)
    assert the_lead(app, "t@example.com").topic_slugs == {"cspo-classes"}
    with app.app_context():
        assert db.session.execute(select(ConsentEvent.topics)).scalar_one() == "cspo-classes"


def test_unknown_topics_are_dropped(app, client):
    assert_thanks(signup(client, "a@example.com", topics=["newsletter", "free-money"]))
    assert the_lead(app, "a@example.com").topic_slugs == {"newsletter"}


# --- The same answer for every address


def test_the_answer_is_the_same_for_new_pending_confirmed_and_unsubscribed(app, client):
    for email in ("pending@example.com", "confirmed@example.com", "gone@example.com"):
        assert_thanks(signup(client, email))
    confirm_address(app, client, "confirmed@example.com")
    confirm_address(app, client, "gone@example.com")
    unsubscribe(client, app, "gone@example.com")

    answers = []
    for email in (
        "new@example.com",
        "pending@example.com",
        "confirmed@example.com",
        "gone@example.com",
    ):
        r = signup(client, email)
        follow = client.get(r.headers["Location"])
        answers.append((r.status_code, r.headers["Location"], r.get_data(), follow.get_data()))
    assert all(a == answers[0] for a in answers)
    assert answers[0][0] == 303


def test_case_and_whitespace_variants_are_one_lead(app, client):
    spellings = ["Bob@Example.com", "  bob@example.COM", "BOB@EXAMPLE.COM\t", "bob@example.com"]
    for spelling in spellings:
        assert_thanks(signup(client, spelling, topics=["newsletter"]))
    assert count(app, Lead) == 1
    assert the_lead(app, "bob@example.com").email == "bob@example.com"
    assert count(app, ConsentEvent, ConsentEvent.kind == ConsentKind.GIVEN) == 4
    assert mails_to_go(app, MailKind.CONFIRMATION) == 1


def test_internationalised_domain_spellings_are_one_lead(app, client):
    for spelling in ("ann@bücher.example", "Ann@xn--bcher-kva.example", "ANN@BÜCHER.example"):
        assert_thanks(signup(client, spelling))
    assert count(app, Lead) == 1
    assert the_lead(app, "ann@bücher.example").status == LeadStatus.PENDING


def test_a_pending_lead_adds_topics_and_keeps_its_first_name(app, client):
    signup(client, "c@example.com", topics=["newsletter"], name="Cleo")
    signup(client, "c@example.com", topics=["cspo-classes"], name="Mallory")
    lead = the_lead(app, "c@example.com")
    assert lead.topic_slugs == {"newsletter", "cspo-classes"}
    assert lead.name == "Cleo"


# --- Subscription bombing: one confirmation per address per window


def test_one_confirmation_per_window_however_often_submitted(app, client, frozen):
    window = app.config["CONFIRMATION_WINDOW_SECONDS"]
    for _ in range(10):
        assert_thanks(signup(client, "victim@example.com"))
        frozen.advance(window / 20)
    assert mails_to_go(app, MailKind.CONFIRMATION) == 1

    frozen.advance(window / 2 + 1)  # past the window of the first mail
    assert_thanks(signup(client, "victim@example.com"))
    assert mails_to_go(app, MailKind.CONFIRMATION) == 2
    assert_thanks(signup(client, "victim@example.com"))
    assert mails_to_go(app, MailKind.CONFIRMATION) == 2
    assert count(app, Lead) == 1


@pytest.mark.parametrize("settings", [{"CONFIRMATION_WINDOW_SECONDS": 60}], ids=["60s"])
def test_the_window_is_a_setting(app, client, frozen):
    signup(client, "v@example.com")
    frozen.advance(59)
    signup(client, "v@example.com")
    assert mails_to_go(app, MailKind.CONFIRMATION) == 1
    frozen.advance(2)
    signup(client, "v@example.com")
    assert mails_to_go(app, MailKind.CONFIRMATION) == 2


def test_the_window_is_per_address(app, client):
    for i in range(5):
        signup(client, f"person{i}@example.com")
    assert mails_to_go(app, MailKind.CONFIRMATION) == 5


# --- Bots: dropped silently


def test_honeypot_is_dropped_silently(app, client):
    r = signup(client, "bot@example.com", nickname="Bot McBotface")
    assert_thanks(r)
    assert nothing_stored(app)


@pytest.mark.parametrize("settings", [{"FORM_MIN_SECONDS": 60}], ids=["60s"])
def test_time_trap_drops_a_form_sent_too_soon(app, client):
    assert_thanks(signup(client, "fast@example.com"))
    assert nothing_stored(app)


@pytest.mark.parametrize("settings", [{"FORM_MIN_SECONDS": 60}], ids=["60s"])
def test_time_trap_lets_a_person_who_took_their_time_through(app, client, frozen):
    fields = form_fields(client.get(ARTICLE).get_data(as_text=True))
    frozen.advance(61)
    fields.update(email="slow@example.com", topics=["newsletter"])
    assert_thanks(client.post("/subscribe", data=fields))
    assert count(app, Lead) == 1


@pytest.mark.parametrize("started", ["", "forged", "x" * 600], ids=["missing", "forged", "long"])
def test_missing_or_forged_form_time_is_dropped(app, client, started):
    assert_thanks(signup(client, "bot@example.com", started=started))
    assert nothing_stored(app)


# --- Rate limit per IP


def _rate_limited(app, client) -> None:
    # Fresh addresses per run: limits live in storage shared between runs.
    ip, other_ip = (f"10.{random.randrange(256)}.{random.randrange(256)}.{n}" for n in (1, 2))
    client.environ_base["REMOTE_ADDR"] = ip
    for i in range(3):
        assert_thanks(signup(client, f"r{i}@example.com"))
    r = signup(client, "r3@example.com")
    assert r.status_code == 429
    page = r.get_data(as_text=True)
    assert 'class="site-header"' in page
    assert "Too many attempts" in page
    assert "Traceback" not in page
    assert count(app, Lead) == 3
    # Another address (another IP) is not affected.
    fields = form_fields(client.get(ARTICLE).get_data(as_text=True))
    fields.update(email="r4@example.com", topics=["newsletter"])
    other = client.post("/subscribe", data=fields, environ_base={"REMOTE_ADDR": other_ip})
    assert other.status_code == 303
    assert count(app, Lead) == 4


@pytest.mark.parametrize("settings", [{"SIGNUP_RATE_LIMIT": "3 per minute"}], ids=["3/min"])
def test_rate_limit_answers_429_with_the_site_error_page(app, client):
    _rate_limited(app, client)


@pytest.mark.parametrize(
    "settings",
    [{"SIGNUP_RATE_LIMIT": "3 per minute", "RATELIMIT_STORAGE_URI": REDIS_URL}],
    ids=["3/min-redis"],
)
def test_rate_limit_works_with_redis_storage(redis_url, app, client):
    assert app.config["RATELIMIT_STORAGE_URI"] == redis_url
    _rate_limited(app, client)


# --- Coming back


def test_resubscribing_after_unsubscribe_needs_a_fresh_confirmation(app, client):
    signup(client, "back@example.com", topics=["newsletter"])
    confirm_address(app, client, "back@example.com")
    unsubscribe(client, app, "back@example.com")
    assert the_lead(app, "back@example.com").status == LeadStatus.UNSUBSCRIBED

    # Straight away, inside the window of the first confirmation mail.
    assert_thanks(signup(client, "back@example.com", topics=["cspo-classes"]))
    lead = the_lead(app, "back@example.com")
    assert lead.status == LeadStatus.PENDING
    assert lead.topic_slugs == {"cspo-classes"}
    assert mails_to_go(app, MailKind.CONFIRMATION) == 2

    # The new link confirms; nothing else does.
    confirm_address(app, client, "back@example.com")
    assert the_lead(app, "back@example.com").status == LeadStatus.CONFIRMED
    assert mails_to_go(app, MailKind.WELCOME) == 2

    # A second signup right after still gets no second mail (bombing).
    assert_thanks(signup(client, "back@example.com"))
    assert mails_to_go(app, MailKind.CONFIRMATION) == 2


def test_a_confirmed_lead_gets_a_notice_and_keeps_its_topics(app, client, frozen):
    signup(client, "happy@example.com", topics=["cspo-classes"], name="Hap")
    confirm_address(app, client, "happy@example.com")
    frozen.advance(app.config["CONFIRMATION_WINDOW_SECONDS"] + 1)

    assert_thanks(signup(client, "happy@example.com", topics=["newsletter"], name="Other"))
    lead = the_lead(app, "happy@example.com")
    assert lead.status == LeadStatus.CONFIRMED
    assert lead.topic_slugs == {"cspo-classes"}
    assert lead.name == "Hap"
    assert mails_to_go(app, MailKind.ALREADY_SUBSCRIBED) == 1
    assert mails_to_go(app, MailKind.CONFIRMATION) == 1

    # The notice is throttled like a confirmation.
    for _ in range(3):
        signup(client, "happy@example.com")
    assert mails_to_go(app, MailKind.ALREADY_SUBSCRIBED) == 1
