"""A sweep over the app's URL map: no staff page can be forgotten.

Every endpoint outside a short public allow-list sends an anonymous visitor to
the login page and answers 403 to a signed-in user of the wrong role (admin
pages for a marketer). Every route that changes state needs a CSRF token,
except the few public ones listed in CSRF_EXEMPT, each guarded otherwise.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from werkzeug.routing import Rule
from werkzeug.routing.converters import NumberConverter, UUIDConverter

from extensions import db
from models import Role
from services.leads import subscriptions
from tests.factories import subscribed_lead
from tests.helpers import csrf_token, sign_in_as

# Endpoints anyone may reach. Keep this short: anything else is staff only.
PUBLIC_PREFIXES = (
    "articles.",
    "subscriptions.",
    "health.",
    "webhooks.",
    # robots.txt, sitemap.xml and the Atom feed, read by crawlers and feed readers.
    "seo.",
    # The API's description (openapi.json and the docs page made from it):
    # routes and shapes, no data.
    "api-docs.",
    "api-reference.",
)
# The JSON API takes a token, never a session: test_api.py sweeps every one
# of its routes (401 without a token, and with a staff session; 403 by role).
API_PREFIX = "/api/"
PUBLIC_ENDPOINTS = {
    "static",
    "auth.login",
    # Signing out when signed out is harmless; both answer without next=.
    "auth.logout",
    "auth.logout_get",
    # The 2FA code step: reached only with a password-checked, five-minute
    # half sign-in in the session; without one it sends to /login.
    "auth.login_code",
    # Staff who cannot sign in (forgot the password, not yet invited in):
    # the link's token is the capability; the forms keep their CSRF token.
    "staff_links.forgot_password",
    "staff_links.reset_password",
    "staff_links.invitation",
    # Prometheus scrapes have no session: METRICS_ALLOWED_IPS or the
    # METRICS_TOKEN bearer decide instead, 403 otherwise (test_metrics.py).
    "metrics.metrics",
}
# Routes that take a POST without a CSRF token (README, "How the public form is protected": no
# session or token for anonymous readers), with how each answers a post that
# has none: the view itself, never the "form had expired" page. Every other
# state-changing route, staff or public (the preferences form), needs a token.
CSRF_EXEMPT = {
    # RFC 8058 one-click: mail providers post with no cookie and no token.
    "subscriptions.unsubscribe": (200, "You are unsubscribed"),
    # The public signup: Origin check, honeypot, time trap, rate limits and
    # double opt-in. Posted empty, it shows the form with its errors.
    "subscriptions.subscribe": (400, "Enter your email address."),
    # The link's token is the capability (an unsubscribe token here: refused).
    "subscriptions.confirm": (400, "This link does not work"),
    # Carries the expired link's token, its capability (none here: refused).
    "subscriptions.resend_confirmation": (400, "This link does not work"),
    # ESP webhooks: the provider's signature or basic auth is checked instead
    # (test_webhooks.py); a form post is refused before that, JSON only.
    "webhooks.receive": (415, "send application/json"),
}
SKIP_METHODS = {"HEAD", "OPTIONS"}


def is_public(endpoint: str) -> bool:
    return endpoint in PUBLIC_ENDPOINTS or endpoint.startswith(PUBLIC_PREFIXES)


def required_role(endpoint: str) -> Role:
    return Role.ADMIN if endpoint.startswith("admin.") else Role.MARKETER


def build(app, rule: Rule, **values) -> str:
    """The rule's URL with dummy values for its parameters; none of them
    exists, which is fine: access is decided before a view looks anything up."""
    args = {}
    for name in rule.arguments:
        converter = rule._converters[name]
        if name in values:
            args[name] = values[name]
        elif hasattr(converter, "items"):  # <any(a, b):x>: one of its values
            args[name] = sorted(converter.items)[0]
        elif isinstance(converter, NumberConverter):
            args[name] = converter.num_convert(1)
        elif isinstance(converter, UUIDConverter):
            args[name] = "00000000-0000-0000-0000-000000000000"
        else:
            args[name] = "dummy-value"
    adapter = app.url_map.bind("localhost")
    return adapter.build(rule.endpoint, args, force_external=False)


def staff_rules(app) -> list[tuple[Rule, str, str]]:
    """(rule, url, method) for every non-public route."""
    out = []
    for rule in app.url_map.iter_rules():
        if is_public(rule.endpoint) or rule.rule.startswith(API_PREFIX):
            continue
        for method in sorted(rule.methods - SKIP_METHODS):
            out.append((rule, build(app, rule), method))
    return out


def call(client, method: str, url: str, token: str | None = None):
    data = {"csrf_token": token} if token else {}
    if method == "GET":
        return client.get(url)
    return client.open(url, method=method, data=data)


def test_the_allow_list_is_short_and_every_other_page_is_swept(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    public = {e for e in endpoints if is_public(e)}
    staff = endpoints - public
    assert len(public) < len(endpoints)
    # The marketer workspace is in the map (a sweep over nothing proves nothing).
    assert {
        "marketing.dashboard",
        "marketing.leads",
        "marketing.leads_csv",
        "marketing.lead_detail",
        "marketing.lead_data",
        "marketing.lead_erase",
    } <= staff


def test_anonymous_visitors_are_sent_to_the_login_page(app, client):
    token = csrf_token(client)  # so POSTs meet the access check, not CSRF
    checked = 0
    for rule, url, method in staff_rules(app):
        r = call(client, method, url, token)
        where = f"{method} {url} ({rule.endpoint})"
        assert r.status_code == 302, f"{where} answered {r.status_code}"
        location = urlsplit(r.headers["Location"])
        assert location.path == "/login", f"{where} -> {r.headers['Location']}"
        assert location.netloc in ("", "localhost")
        assert parse_qs(location.query).get("next") == [url], where
        checked += 1
    assert checked >= 6


def test_signed_in_users_of_the_wrong_role_get_403(app, client):
    sign_in_as(app, client, Role.MARKETER)
    token = csrf_token(client, "/marketing/")
    for rule, url, method in staff_rules(app):
        r = call(client, method, url, token)
        where = f"{method} {url} ({rule.endpoint}) as a marketer"
        if required_role(rule.endpoint) == Role.ADMIN:
            assert r.status_code == 403, f"{where} answered {r.status_code}"
            assert "You do not have access to this page." in r.get_data(as_text=True)
        else:
            # Allowed: whatever the dummy values lead to, never a refusal.
            assert r.status_code not in (302, 401, 403, 500), f"{where}: {r.status_code}"


def test_admins_reach_every_staff_page(app, client):
    sign_in_as(app, client, Role.ADMIN)
    token = csrf_token(client, "/marketing/")
    for rule, url, method in staff_rules(app):
        r = call(client, method, url, token)
        where = f"{method} {url} ({rule.endpoint}) as an admin"
        assert r.status_code not in (401, 403, 500), f"{where}: {r.status_code}"
        if r.status_code == 302:
            assert not r.headers["Location"].startswith("/login"), where


def _no_store(r) -> bool:
    return "no-store" in r.headers.get("Cache-Control", "")


@pytest.mark.parametrize("role", [None, Role.MARKETER, Role.ADMIN])
def test_no_staff_response_is_kept_in_a_cache(app, client, role):
    """Lead pages, the lead list, the dashboard, users, the outbox and the
    audit log show addresses, IPs and user agents: whatever the answer
    (a page, a redirect, a refusal, an error), no browser keeps a copy."""
    if role is not None:
        sign_in_as(app, client, role)
    token = csrf_token(client, "/marketing/" if role else "/login")
    for rule, url, method in staff_rules(app):
        r = call(client, method, url, token)
        assert _no_store(r), f"{method} {url} ({rule.endpoint}): {r.headers.get('Cache-Control')}"
    for url in ("/marketing/no-such-page", "/admin/no-such-page", "/login", "/login?next=/admin/"):
        r = client.get(url)
        assert _no_store(r), f"GET {url}: {r.status_code} {r.headers.get('Cache-Control')}"
    # Public pages stay cacheable for anonymous readers.
    if role is None:
        r = client.get("/")
        assert r.headers["Cache-Control"].startswith("public")


def test_a_disabled_users_session_is_anonymous_everywhere(app, client):
    from services.staff import auth

    sign_in_as(app, client, Role.ADMIN)
    with app.app_context():
        auth.set_active(auth.user_by_email("admin@example.com"), False)
        db.session.commit()
    token = csrf_token(client)
    for rule, url, method in staff_rules(app):
        r = call(client, method, url, token)
        assert r.status_code == 302, f"{method} {url} ({rule.endpoint}): {r.status_code}"


# --- CSRF: every state-changing route needs a token.


@pytest.fixture
def app_config(app_config):
    return {**app_config, "WTF_CSRF_ENABLED": True}


def _state_changing(app) -> list[tuple[Rule, str]]:
    out = []
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - SKIP_METHODS - {"GET"}):
            out.append((rule, method))
    return out


def test_every_state_changing_route_needs_a_csrf_token(app, client):
    with app.app_context():
        lead = subscribed_lead("lead@example.com")
        tokens = {
            "token": subscriptions.unsubscribe_token(lead),
            "public_id": lead.public_id,
        }
    sign_in_as(app, client, Role.ADMIN)
    routes = _state_changing(app)
    endpoints = {rule.endpoint for rule, _ in routes}
    assert endpoints >= {
        "subscriptions.subscribe",
        "subscriptions.preferences",
        "auth.login",
        "auth.logout",
        "marketing.lead_erase",
        *CSRF_EXEMPT,
    }
    # Only public routes go without a token: no staff form is ever exempt.
    assert all(is_public(e) and not e.startswith("auth.") for e in CSRF_EXEMPT)
    for rule, method in routes:
        url = build(app, rule, **tokens)
        r = client.open(url, method=method, data={"confirm_email": "nobody@example.com"})
        where = f"{method} {url} ({rule.endpoint}) without a token"
        page = r.get_data(as_text=True)
        if rule.rule.startswith(API_PREFIX):
            # No CSRF token needed, because a session cookie counts for nothing there.
            assert r.status_code == 401, f"{where}: {r.status_code}"
            assert "Session cookies are not accepted" in page, where
            continue
        if rule.endpoint in CSRF_EXEMPT:
            status, text = CSRF_EXEMPT[rule.endpoint]
            assert r.status_code == status, f"{where}: {r.status_code}"
            assert text in page, where
            assert "form had expired" not in page, where
            continue
        assert r.status_code == 400, f"{where}: {r.status_code}"
        assert "form had expired" in page, where
        # A wrong token is no better than none.
        r = client.open(url, method=method, data={"csrf_token": "forged"})
        assert r.status_code == 400, f"{method} {url} with a forged token: {r.status_code}"
    # What guards the signup instead: a post from another site is refused.
    r = client.post(
        "/subscribe",
        data={"email": "nobody@example.com", "topics": "newsletter"},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403
    # The session survived all that: nothing was signed out or erased.
    assert client.get("/marketing/").status_code == 200
    with app.app_context():
        assert subscriptions.lead_by_email("lead@example.com") is not None


def test_one_click_unsubscribe_needs_no_cookie_and_no_token(app):
    with app.app_context():
        token = subscriptions.unsubscribe_token(subscribed_lead("lead@example.com"))
    bare = app.test_client(use_cookies=False)
    r = bare.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    assert "Set-Cookie" not in r.headers or "session" not in r.headers["Set-Cookie"]
