"""The public signup carries no session and no CSRF token. What guards it:
the Origin check, the time trap on the page's signed stamp, and where the
visitor came from read at post time (Referer, and the fields the script fills)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from extensions import db
from models import Lead
from services.leads import signup_guard
from tests.helpers import T0, form_fields

ARTICLE = "/cspo-certification-benefits"
SITE = "http://localhost"


@pytest.fixture
def app_config(app_config):
    return {
        **app_config,
        "FORM_MIN_SECONDS": 3,
        "EMBED_ALLOWED_ORIGINS": ["https://partner.example"],
    }


def _fields(client, path=ARTICLE, **typed):
    fields = form_fields(client.get(path).get_data(as_text=True))
    return {**fields, "topics": ["cspo-classes"], **typed}


def _leads(app) -> list[Lead]:
    with app.app_context():
        return db.session.execute(db.select(Lead)).scalars().all()


def _post(client, data, **headers):
    return client.post("/subscribe", data=data, headers=headers)


# --- Origin check


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": SITE},
        {"Origin": "https://partner.example"},
        {"Referer": f"{SITE}{ARTICLE}"},  # no Origin: the Referer says the same
        {},  # neither: no browser page, the traps decide
    ],
    ids=["own-origin", "embedding-site", "referer-only", "no-headers"],
)
def test_posts_from_allowed_origins_are_taken(app, client, frozen, headers):
    data = _fields(client, email="ann@example.com")
    frozen.set(T0 + timedelta(seconds=10))
    r = _post(client, data, **headers)
    assert r.status_code == 303
    assert [lead.email for lead in _leads(app)] == ["ann@example.com"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost:8080"},  # another port is another origin
        {"Referer": "https://evil.example/page"},
        {"Origin": "https://partner.example.evil.example"},
    ],
)
def test_posts_from_other_origins_get_a_403_that_explains(app, client, frozen, headers):
    data = _fields(client, email="ann@example.com")
    frozen.set(T0 + timedelta(seconds=10))
    r = _post(client, data, **headers)
    assert r.status_code == 403
    assert "sent from another site" in r.text
    assert "Nothing was saved" in r.text
    assert _leads(app) == []


# --- Time trap


def test_a_post_sooner_than_form_min_seconds_is_answered_like_a_signup(app, client, frozen):
    data = _fields(client, email="quick@example.com")
    frozen.set(T0 + timedelta(seconds=1))
    r = _post(client, data, Origin=SITE)
    assert r.status_code == 303 and r.headers["Location"].endswith("/subscribe/thanks")
    assert _leads(app) == []
    frozen.set(T0 + timedelta(seconds=3))
    assert _post(client, data, Origin=SITE).status_code == 303
    assert [lead.email for lead in _leads(app)] == ["quick@example.com"]


@pytest.mark.parametrize("started", ["", "not-a-token", "MTc5NTk2Mzc3Ng.aww7gA.forged"])
def test_a_missing_or_forged_stamp_stores_nothing(app, client, frozen, started):
    data = {**_fields(client, email="bot@example.com"), "started": started}
    frozen.set(T0 + timedelta(seconds=30))
    assert _post(client, data, Origin=SITE).status_code == 303
    assert _leads(app) == []


def test_a_stamp_more_than_a_day_old_shows_the_form_again_with_what_was_typed(app, client, frozen):
    data = _fields(client, email="slow.reader@example.com", name="Ria")
    frozen.set(T0 + timedelta(days=1, minutes=1))
    r = _post(client, data, Origin=SITE)
    assert r.status_code == 400
    assert "open for more than a day" in r.text
    assert 'value="slow.reader@example.com"' in r.text and 'value="Ria"' in r.text
    assert _leads(app) == []
    # Sent again at once (no second wait): taken.
    again = form_fields(r.get_data(as_text=True))
    r = _post(client, {**data, "started": again["started"]}, Origin=SITE)
    assert r.status_code == 303
    assert [lead.email for lead in _leads(app)] == ["slow.reader@example.com"]


def test_a_form_with_errors_keeps_its_stamp(client, frozen):
    data = _fields(client, email="not an address")
    frozen.set(T0 + timedelta(seconds=10))
    r = _post(client, data, Origin=SITE)
    assert r.status_code == 400
    assert form_fields(r.get_data(as_text=True))["started"] == data["started"]


def test_stamps_round_down_and_check_as_documented(app, frozen):
    with app.test_request_context():
        frozen.set(T0 + timedelta(milliseconds=1999))
        token = signup_guard.stamp()
        frozen.set(T0 + timedelta(seconds=2, milliseconds=999))
        assert signup_guard.check_stamp(token) is signup_guard.Stamp.TOO_SOON
        frozen.set(T0 + timedelta(seconds=3))
        assert signup_guard.check_stamp(token) is signup_guard.Stamp.OK
        frozen.set(T0 + timedelta(days=1, seconds=1))
        assert signup_guard.check_stamp(token) is signup_guard.Stamp.STALE
        assert signup_guard.check_stamp(None) is signup_guard.Stamp.INVALID


# --- Where the visitor came from


def test_utm_values_come_from_the_referer_without_javascript(app, client, frozen):
    page = f"{SITE}{ARTICLE}?utm_source=linkedin&utm_medium=social&utm_campaign=cspo-q3"
    data = _fields(client, email="utm@example.com")
    frozen.set(T0 + timedelta(seconds=10))
    assert _post(client, data, Origin=SITE, Referer=page).status_code == 303
    (lead,) = _leads(app)
    assert (lead.utm_source, lead.utm_medium, lead.utm_campaign) == (
        "linkedin",
        "social",
        "cspo-q3",
    )
    assert lead.referrer is None  # only the script knows the outside page


def test_fields_filled_by_the_script_are_kept(app, client, frozen):
    data = _fields(
        client,
        email="js@example.com",
        utm_source="newsletter",
        ref="https://www.google.com/search?q=cspo",
    )
    frozen.set(T0 + timedelta(seconds=10))
    referer = f"{SITE}{ARTICLE}?utm_source=newsletter"
    assert _post(client, data, Origin=SITE, Referer=referer).status_code == 303
    (lead,) = _leads(app)
    assert lead.utm_source == "newsletter"
    assert lead.referrer == "https://www.google.com/search?q=cspo"


def test_our_own_pages_are_not_an_outside_referrer(app, client, frozen):
    data = _fields(client, email="own@example.com", ref=f"{SITE}/")
    frozen.set(T0 + timedelta(seconds=10))
    _post(client, data, Origin=SITE)
    (lead,) = _leads(app)
    assert lead.referrer is None


# --- Settings


@pytest.mark.parametrize("value", ["partner.example", "https://partner.example/page", "ftp://x"])
def test_embed_allowed_origins_must_be_origins(monkeypatch, tmp_path, value):
    from config import Config

    monkeypatch.setenv("EMBED_ALLOWED_ORIGINS", f"https://ok.example,{value}")
    with pytest.raises(ValueError, match="EMBED_ALLOWED_ORIGINS"):
        Config.from_env(str(tmp_path))


def test_embed_allowed_origins_are_read_as_a_list(monkeypatch, tmp_path):
    from config import Config

    monkeypatch.setenv("EMBED_ALLOWED_ORIGINS", " https://A.example/ , http://b.example:8080,")
    assert Config.from_env(str(tmp_path))["EMBED_ALLOWED_ORIGINS"] == [
        "https://a.example",
        "http://b.example:8080",
    ]
