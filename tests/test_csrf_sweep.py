"""Every state change is a POST: a sweep of every GET route in the URL map.

The other half of the CSRF sweep, that every route taking a POST (or any
other method that is not GET) refuses a request without a valid token except
the public ones it lists (one-click unsubscribe, signup, confirm, resend), is
test_access_sweep.test_every_state_changing_route_needs_a_csrf_token; it is
not repeated here.

Here every GET route is called, signed in as an admin so staff pages answer
too, with real ids and tokens, and every table is compared before and after.
A GET may change nothing, with the documented exceptions below; a HEAD
changes nothing (a staff download's audit record aside). Mail link scanners
open every link in a mail (the confirmation link included: GET shows a
button, the POST confirms).
"""

from __future__ import annotations

from sqlalchemy import text

from extensions import db
from models import OutboxMessage, Role
from services import bounces
from services.campaigns import announcements, classes
from services.leads import subscriptions
from tests.factories import queue_every_kind, subscribed_lead
from tests.helpers import sign_in_as

ARTICLE_SLUG = "cspo-certification-benefits"
# GET routes allowed to write, and what they may write.
GET_WRITES = {
    # The one exception among the visitor's links: a tracked register link
    # in mail and on the training page counts the click (analytics only,
    # nothing a visitor can see changes), then redirects to the class's own
    # registration page. Not counted for known bots and mail link scanners
    # (services.reporting.page_views.is_bot), nor on HEAD: see the test below.
    "articles.register": {"class_click", "signup_stats_daily"},
    # Downloads of personal data leave an audit record of who took them.
    "marketing.lead_data": {"audit_event"},
    "marketing.leads_csv": {"audit_event"},
}
# A HEAD writes nothing, but Flask answers it by running the GET view: a HEAD
# of a personal-data download is audited like the GET (who asked, never less).
HEAD_WRITES = {e: GET_WRITES[e] for e in ("marketing.lead_data", "marketing.leads_csv")}
# Article views are counted on GET by design (buffered, no cookies).
IGNORED = {"page_view_daily"}


def _snapshot() -> dict[str, list]:
    out = {}
    for table in db.metadata.sorted_tables:
        if table.name in IGNORED:
            continue
        rows = db.session.execute(table.select()).all()
        out[table.name] = sorted(map(repr, rows))
    db.session.rollback()
    return out


def _values(app) -> dict[str, dict[str, object]]:
    """Real values for each endpoint's URL parameters."""
    with app.app_context():
        pending = subscribed_lead("pending@example.com")
        queue_every_kind(["Ann"])
        db.session.commit()
        lead = subscriptions.lead_by_email("confirmed0@example.com")
        cls = classes.upcoming_classes(limit=1)[0]
        ann = db.session.execute(db.select(announcements.Announcement)).scalar_one()
        row_id = db.session.execute(db.select(OutboxMessage.id).limit(1)).scalar_one()
        event_id = bounces.process(b"Subject: a reply\r\n\r\nThanks!", None).id
        db.session.commit()
        return {
            "subscriptions.confirm_page": {"token": subscriptions.confirm_token(pending)},
            "subscriptions.preferences": {"token": subscriptions.preferences_token(lead)},
            "subscriptions.unsubscribe_page": {"token": subscriptions.unsubscribe_token(lead)},
            "articles.register": {"token": classes.register_token(cls, lead, "page")},
            "articles.class_ics": {"public_id": cls.public_id},
            "articles.article": {"slug": ARTICLE_SLUG},
            "admin.class_edit": {"public_id": cls.public_id},
            "static": {"filename": "css/site.css"},
            "*lead": {"public_id": lead.public_id},
            "*announcement": {"public_id": ann.public_id},
            "*row": {"row_id": row_id},
            "admin.inbound_detail": {"event_id": event_id},
        }


def _url(app, rule, values: dict) -> str:
    args = dict(values.get(rule.endpoint, {}))
    for name in rule.arguments - set(args):
        if name == "public_id":
            group = "*announcement" if ".announcement" in rule.endpoint else "*lead"
            args[name] = values[group]["public_id"]
        elif name == "row_id":
            args[name] = values["*row"]["row_id"]
        else:
            args[name] = "x"
    return app.url_map.bind("localhost").build(rule.endpoint, args)


def test_no_get_route_changes_data(app, client):
    values = _values(app)
    sign_in_as(app, client, Role.ADMIN)
    rules = [r for r in app.url_map.iter_rules() if "GET" in r.methods]
    assert len(rules) >= 30
    assert "subscriptions.confirm_page" in {r.endpoint for r in rules}
    writers = {}
    with app.app_context():
        for rule in sorted(rules, key=lambda r: r.rule):
            url = _url(app, rule, values)
            before = _snapshot()
            r = client.head(url)
            r.close()
            assert r.status_code < 500, f"HEAD {url}: {r.status_code}"
            after = _snapshot()
            changed = {t for t in before if before[t] != after[t]}
            allowed = HEAD_WRITES.get(rule.endpoint, set())
            assert changed <= allowed, f"HEAD {url} ({rule.endpoint}) wrote to {changed - allowed}"
            before = after
            r = client.get(url)
            r.get_data()  # a streamed body (the CSV export) runs to its end
            r.close()
            assert r.status_code < 500, f"GET {url}: {r.status_code}"
            after = _snapshot()
            changed = {t for t in before if before[t] != after[t]}
            allowed = GET_WRITES.get(rule.endpoint, set())
            assert changed <= allowed, f"GET {url} ({rule.endpoint}) wrote to {changed - allowed}"
            if changed:
                writers[rule.endpoint] = changed
    # The exceptions are real (each did write), so the list stays honest.
    assert set(writers) == set(GET_WRITES), writers


def _lead_status(email: str) -> str:
    return db.session.execute(
        text("SELECT status FROM lead WHERE email = :e"), {"e": email}
    ).scalar_one()


def test_link_scanners_and_a_second_click_never_change_a_confirmation(app, client):
    """Opening the confirmation link (GET, HEAD, as often as a scanner
    likes) leaves the lead pending; the button's POST confirms; a second
    POST, and any GET or HEAD after it, leave every row as it was."""
    values = _values(app)
    url = _url(app, app.url_map._rules_by_endpoint["subscriptions.confirm_page"][0], values)
    scanner = app.test_client(use_cookies=False)
    with app.app_context():
        before = _snapshot()
        for method in ("GET", "HEAD", "GET"):
            for who in (client, scanner):
                assert who.open(url, method=method).status_code == 200
        assert _snapshot() == before
        assert _lead_status("pending@example.com") == "pending"

        assert "You're in" in client.post(url).get_data(as_text=True)
        assert _lead_status("pending@example.com") == "confirmed"
        before = _snapshot()
        for method in ("POST", "GET", "HEAD", "GET"):
            for who in (client, scanner):
                assert who.open(url, method=method).status_code == 200
        assert _snapshot() == before


BOTS = [
    "",  # no User-Agent at all
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Barracuda Sentinel (EE)",
    "Mozilla/5.0 (Windows NT 10.0) Mimecast-URL-Protect",
    "Proofpoint URL Defense",
    "Mozilla/5.0 (compatible; Microsoft SafeLinks)",
    "curl/8.5.0",
    "python-requests/2.32",
]
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


def test_register_links_count_browsers_only_never_bots_or_head(app, client):
    """The documented GET exception stays an analytics count of people: a
    mail scanner or other bot, and any HEAD, is sent on to the class's page
    and leaves every row as it was."""
    url = _url(app, app.url_map._rules_by_endpoint["articles.register"][0], _values(app))
    with app.app_context():
        before = _snapshot()
        landing = None
        for agent in BOTS:
            for method in ("GET", "HEAD"):
                r = client.open(url, method=method, headers={"User-Agent": agent})
                assert r.status_code == 302, (method, agent)
                landing = landing or r.headers["Location"]
                assert r.headers["Location"] == landing
        r = client.head(url, headers={"User-Agent": BROWSER})
        assert (r.status_code, r.headers["Location"]) == (302, landing)
        assert _snapshot() == before

        r = client.get(url, headers={"User-Agent": BROWSER})
        assert (r.status_code, r.headers["Location"]) == (302, landing)
        after = _snapshot()
        changed = {t for t in before if before[t] != after[t]}
        assert changed == GET_WRITES["articles.register"]
