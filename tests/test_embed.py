"""The embeddable signup form: framed by the allowed sites only, presets from
its URL, thanks shown inside the frame, and the embedding page recorded."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from extensions import db
from models import Lead, Role
from tests.helpers import T0, form_fields, sign_in_as

PARTNER = "https://partner.example"
PARTNER_PAGE = f"{PARTNER}/blog/why-cspo"


@pytest.fixture
def app_config(app_config):
    return {**app_config, "EMBED_ALLOWED_ORIGINS": [PARTNER, "https://other.example"]}


def _frame_ancestors(response) -> str:
    return re.search(r"frame-ancestors ([^;]+)", response.headers["Content-Security-Policy"])[1]


def test_the_embed_page_may_be_framed_by_the_allowed_sites_only(client):
    r = client.get("/embed/signup")
    assert r.status_code == 200
    assert _frame_ancestors(r).split() == ["'self'", PARTNER, "https://other.example"]
    assert "X-Frame-Options" not in r.headers
    assert "Set-Cookie" not in r.headers
    assert "csrf_token" not in r.text
    # Every other page still refuses framing.
    for path in ("/", "/cspo-certification-benefits", "/subscribe", "/login"):
        other = client.get(path)
        assert _frame_ancestors(other) == "'none'", path
        assert other.headers["X-Frame-Options"] == "DENY"


def test_topics_and_source_are_preset_from_the_url(client):
    r = client.get("/embed/signup?topics=newsletter,cspo-classes,bogus&source=partner-blog")
    fields = form_fields(r.get_data(as_text=True))
    assert fields["placement"] == "embed"
    assert fields["source"] == "partner-blog"
    checked = re.findall(r'value="([\w-]+)" id="topic-[\w-]+-embed"\s+checked', r.text)
    assert sorted(checked) == ["cspo-classes", "newsletter"]


def _embed_signup(client, frozen, email, query="?topics=cspo-classes&source=partner-blog", **extra):
    page = client.get(f"/embed/signup{query}", headers={"Referer": PARTNER_PAGE})
    data = {**form_fields(page.get_data(as_text=True)), "email": email, **extra}
    data.setdefault("topics", ["cspo-classes"])
    frozen.set(T0 + timedelta(seconds=10))
    # The iframe is our page: the post comes from our origin and URL.
    return client.post(
        "/subscribe",
        data=data,
        headers={"Origin": "http://localhost", "Referer": f"http://localhost/embed/signup{query}"},
    )


def test_a_signup_in_the_frame_thanks_in_the_frame_and_records_the_embedding_page(
    app, client, frozen
):
    r = _embed_signup(client, frozen, "framed@example.com")
    assert r.status_code == 200
    assert "Check your inbox" in r.text
    assert "'self'" in _frame_ancestors(r) and PARTNER in _frame_ancestors(r)
    with app.app_context():
        lead = db.session.execute(db.select(Lead)).scalar_one()
        assert lead.source_placement == "embed"
        assert lead.source_slug == "partner-blog"
        assert lead.referrer == PARTNER_PAGE  # known without JavaScript too
        assert lead.status.value == "pending"


def test_without_a_source_label_the_embedding_site_is_the_source(app, client, frozen):
    assert _embed_signup(client, frozen, "site@example.com", query="").status_code == 200
    with app.app_context():
        lead = db.session.execute(db.select(Lead)).scalar_one()
        assert lead.source_slug == "partner.example"


def test_errors_in_the_frame_are_shown_in_the_frame(app, client, frozen):
    r = _embed_signup(client, frozen, "not an address")
    assert r.status_code == 400
    assert PARTNER in _frame_ancestors(r)
    assert 'class="field-errors"' in r.text


def test_a_referer_from_a_site_not_allowed_is_not_recorded(client):
    page = client.get("/embed/signup", headers={"Referer": "https://evil.example/page"})
    assert form_fields(page.get_data(as_text=True))["ref"] == ""


def test_marketers_find_the_snippet_with_instructions(app, client):
    sign_in_as(app, client, Role.MARKETER)
    r = client.get("/marketing/embed")
    assert r.status_code == 200
    assert '&lt;iframe src="http://localhost/embed/signup?topics=cspo-classes' in r.text
    assert PARTNER in r.text
    assert "referrerpolicy" in r.text


def test_the_snippet_page_says_when_no_site_is_allowed(app, client):
    app.config["EMBED_ALLOWED_ORIGINS"] = []
    sign_in_as(app, client, Role.ADMIN)
    r = client.get("/marketing/embed")
    assert "No other site may embed the form yet" in r.text
    assert _frame_ancestors(client.get("/embed/signup")) == "'self'"
