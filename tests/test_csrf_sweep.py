"""Every state change is a POST: a sweep of every GET route in the URL map.

The other half of the CSRF sweep, that every route taking a POST (or any
other method that is not GET) refuses a request without a valid token except
the RFC 8058 one-click unsubscribe, is
test_access_sweep.test_every_state_changing_route_needs_a_csrf_token; it is
not repeated here.

Here every GET route is called, signed in as an admin so staff pages answer
too, with real ids and tokens, and every table is compared before and after.
A GET may change nothing, with the documented exceptions below, each for a
reason a browser or a mail client imposes.
"""

from __future__ import annotations

from sqlalchemy import text

from extensions import db
from models import OutboxMessage, Role
from services import announcements, subscriptions, training
from services.subscriptions import Evidence, SignupRequest
from tests.test_auth import sign_in_as
from tests.test_rfc8058 import queue_every_kind

ARTICLE_SLUG = "cspo-certification-benefits"
# GET routes allowed to write, and what they may write.
GET_WRITES = {
    # Double opt-in: the link in the confirmation mail is followed by a GET
    # (PRODUCT.md: GET /confirm/<token>). Idempotent; a stale link changes nothing.
    "subscriptions.confirm": {
        "lead",
        "consent_event",
        "outbox_message",
        "signup_stats_daily",
    },
    # A tracked register link in mail and on the training page: counted, then
    # redirected to the class's own registration page.
    "articles.register": {"class_click", "signup_stats_daily"},
    # Downloads of personal data leave an audit record of who took them.
    "marketing.lead_data": {"audit_event"},
    "marketing.leads_csv": {"audit_event"},
}
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
        subscriptions.subscribe(
            SignupRequest(email="pending@example.com", topics=["newsletter"], placement="page"),
            Evidence(),
        )
        queue_every_kind(["Ann"])
        db.session.commit()
        pending = subscriptions.lead_by_email("pending@example.com")
        lead = subscriptions.lead_by_email("confirmed0@example.com")
        cls = training.upcoming_classes(limit=1)[0]
        ann = db.session.execute(db.select(announcements.Announcement)).scalar_one()
        row_id = db.session.execute(db.select(OutboxMessage.id).limit(1)).scalar_one()
        return {
            "subscriptions.confirm": {"token": subscriptions.confirm_token(pending)},
            "subscriptions.preferences": {"token": subscriptions.preferences_token(lead)},
            "subscriptions.unsubscribe_page": {"token": subscriptions.unsubscribe_token(lead)},
            "articles.register": {"token": training.register_token(cls, lead, "page")},
            "articles.class_ics": {"public_id": cls.public_id},
            "articles.article": {"slug": ARTICLE_SLUG},
            "admin.class_edit": {"public_id": cls.public_id},
            "static": {"filename": "css/site.css"},
            "*lead": {"public_id": lead.public_id},
            "*announcement": {"public_id": ann.public_id},
            "*row": {"row_id": row_id},
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
    writers = {}
    with app.app_context():
        for rule in sorted(rules, key=lambda r: r.rule):
            url = _url(app, rule, values)
            before = _snapshot()
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


def test_a_second_confirm_click_and_link_scanners_change_nothing(app, client):
    """The GET that confirms is idempotent: a second click, or a mail
    scanner that follows the link again, leaves every row as it was."""
    values = _values(app)
    url = _url(app, app.url_map._rules_by_endpoint["subscriptions.confirm"][0], values)
    assert client.get(url).status_code == 200
    with app.app_context():
        before = _snapshot()
        for method in ("GET", "HEAD", "GET"):
            assert client.open(url, method=method).status_code == 200
        assert _snapshot() == before
        status = db.session.execute(
            text("SELECT status FROM lead WHERE email = 'pending@example.com'")
        ).scalar_one()
    assert status == "confirmed"
