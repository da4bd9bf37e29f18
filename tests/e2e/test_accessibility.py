"""Accessibility: axe-core in Chromium on the visitor's pages, zero serious
or critical violations.

axe-core comes from the npm registry, pinned, installed once into
.cache/axe (gitignored) by the fixture below, and injected with Playwright's
add_script_tag. The pages run under their real CSP; only the test's own
context bypasses it so the injected script can run.

Pages: the home page, the article, the training page without and with
classes, the signup error state (inline form and signup page), the thanks
page, the confirmation link's page and the page after its button, the
preferences page (and after saving), the unsubscribe page, the login page
and its error state, the 404 page. Staff pages: the admins' deliverability
page empty, then with rates, charts and the complaint warning; the account
pages (account, 2FA setup, recovery codes, the code step, password reset
request, users with a pending invitation).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import delete

from app import create_app
from extensions import db
from models import (
    InboundEvent,
    InboundKind,
    Lead,
    LeadStatus,
    LeadTopic,
    MailKind,
    OutboxMessage,
    OutboxStatus,
    Role,
    TrainingClass,
)
from services.leads import subscriptions
from tests import procs
from tests.e2e.chromium import launch_chromium
from tests.helpers import ADMIN_EMAIL, PASSWORD, add_user, require_service

pytestmark = pytest.mark.e2e

AXE_VERSION = "4.14.1"
AXE_DIR = procs.ROOT / ".cache" / "axe"
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
ARTICLE = "/cspo-certification-benefits"
TRAINING = "/certified-scrum-product-owner-cspo-training"
BLOCKING = ("serious", "critical")
ARTIFACTS = procs.ROOT / "test-artifacts" / "a11y"


def _installed_version() -> str | None:
    package = AXE_JS.parent / "package.json"
    if not AXE_JS.exists() or not package.exists():
        return None
    return json.loads(package.read_text()).get("version")


@pytest.fixture(scope="session")
def axe_js() -> Path:
    """axe-core AXE_VERSION from the npm registry, installed on first use."""
    if _installed_version() != AXE_VERSION:
        npm = shutil.which("npm")
        if npm is None:
            require_service("npm", "needed once to install axe-core into .cache/axe")
        AXE_DIR.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(AXE_DIR),
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--ignore-scripts",
                f"axe-core@{AXE_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0 or _installed_version() != AXE_VERSION:
            require_service(
                "npm registry", f"npm install axe-core@{AXE_VERSION} failed:\n{result.stderr}"
            )
    return AXE_JS


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("a11y")
    port = procs.free_port()
    url = f"sqlite:///{tmp / 'leads.sqlite3'}"
    env = procs.app_env(tmp, url, port=port, FORM_MIN_SECONDS=0)
    procs.flask_db_upgrade(env)
    app = create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": env["SECRET_KEY"]}
    )
    with app.app_context():
        lead = Lead(
            email="ann@example.com",
            name="Ann",
            status=LeadStatus.CONFIRMED,
            topics=[LeadTopic(topic="newsletter")],
        )
        pending = Lead(
            email="cleo@example.com",
            status=LeadStatus.PENDING,
            topics=[LeadTopic(topic="newsletter"), LeadTopic(topic="cspo-classes")],
        )
        db.session.add_all([lead, pending])
        db.session.commit()
        tokens = {
            "confirm": subscriptions.confirm_token(pending),
            "preferences": subscriptions.preferences_token(lead),
            "unsubscribe": subscriptions.unsubscribe_token(lead),
        }
    with procs.gunicorn(env, workers=1) as server:
        yield {"url": server.url, "app": app, "tokens": tokens}
    with app.app_context():
        db.engine.dispose()


def add_classes(app) -> None:
    now = datetime.now(UTC)
    with app.app_context():
        for i, (online, seats) in enumerate([(True, 12), (False, 0), (True, None)]):
            db.session.add(
                TrainingClass(
                    title=f"CSPO class {i + 1}",
                    starts_at=now + timedelta(days=20 + 30 * i),
                    ends_at=now + timedelta(days=21 + 30 * i),
                    timezone="Europe/Berlin",
                    online=online,
                    location=None if online else "Berlin, Alexanderplatz 1",
                    trainer="Pat Trainer",
                    price=Decimal("1195.00"),
                    seats=seats,
                    registration_url="https://register.example/cspo",
                )
            )
        db.session.commit()


@pytest.fixture(scope="module")
def page(site):
    with launch_chromium() as browser:
        # The pages keep their CSP for people; this context bypasses it so
        # the injected axe script (an inline <script>) may run.
        context = browser.new_context(base_url=site["url"], bypass_csp=True)
        yield context.new_page()


def audit(page, axe_js: Path, label: str) -> list[dict]:
    """axe's violations on the page as it is now; all of them are saved to
    test-artifacts/a11y/<label>.json, the blocking ones returned."""
    page.add_script_tag(path=str(axe_js))
    result = page.evaluate(
        """async () => {
          const r = await axe.run(document, {resultTypes: ['violations']});
          return r.violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => ({target: n.target, html: n.html.slice(0, 200),
                                      summary: n.failureSummary}))
          }));
        }"""
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{label}.json").write_text(json.dumps(result, indent=2))
    return [v for v in result if v["impact"] in BLOCKING]


def describe(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{v['impact']} {v['id']}: {v['help']}")
        lines += [f"    {n['target']} {n['html']}" for n in v["nodes"][:5]]
    return "\n".join(lines)


def test_visitor_pages_have_no_serious_or_critical_violations(site, page, axe_js):
    found: dict[str, list[dict]] = {}

    def check(label: str, path: str | None = None, status: int = 200) -> None:
        if path is not None:
            response = page.goto(path)
            assert response.status == status, (label, response.status)
        found[label] = audit(page, axe_js, label)

    check("home", "/")
    check("article", ARTICLE)
    check("training-without-classes", TRAINING)

    # The signup error state, as a visitor gets it from the inline form.
    page.goto(ARTICLE)
    form = page.locator("form.signup").first
    form.locator("input[type=email]").fill("not-an-email")
    form.locator("input[name=name]").fill("<b>Ann</b>")
    form.locator("button[type=submit]").click()
    page.wait_for_load_state("load")
    assert page.locator("[aria-invalid=true]").count() >= 2
    check("signup-errors-inline")
    check("signup-page", "/subscribe")
    page.locator("form.signup button[type=submit]").click()  # empty: every error at once
    page.wait_for_load_state("load")
    check("signup-page-errors")

    # A good signup, and the page that thanks for it.
    page.goto(ARTICLE)
    form = page.locator("form.signup").first
    form.locator("input[type=email]").fill("bob@example.com")
    form.locator("input[type=checkbox]").first.check()
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/subscribe/thanks")
    check("thanks")

    # The confirmation link: one button, then the page it leads to.
    check("confirm", f"/confirm/{site['tokens']['confirm']}")
    page.get_by_role("button", name="Yes, confirm my subscription").click()
    page.wait_for_load_state("load")
    assert page.get_by_role("heading", name="You're in — thank you!").is_visible()
    check("confirmed")

    prefs = f"/preferences/{site['tokens']['preferences']}"
    check("preferences", prefs)
    page.locator("button[name=save]").click()
    page.wait_for_load_state("load")
    check("preferences-saved")
    check("unsubscribe", f"/unsubscribe/{site['tokens']['unsubscribe']}")

    check("login", "/login")
    page.fill("input[name=email]", "nobody@example.com")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    page.wait_for_load_state("load")
    check("login-error")
    check("not-found", "/no-such-page", status=404)

    add_classes(site["app"])
    check("training-with-classes", TRAINING)
    assert page.locator("text=CSPO class 1").count() >= 1

    blocking = {label: v for label, v in found.items() if v}
    assert not blocking, "\n".join(f"--- {k}\n{describe(v)}" for k, v in blocking.items())


def add_mail_and_complaints(app) -> None:
    """A week's mail with complaints past 0.1%: the charts and the warning."""
    now = datetime.now(UTC)
    with app.app_context():
        for day, n in ((1, 400), (3, 600)):
            when = now - timedelta(days=day)
            db.session.add_all(
                OutboxMessage(
                    kind=MailKind.WELCOME,
                    status=OutboxStatus.SENT,
                    to_email=f"r{day}-{i}@example.com",
                    sent_at=when,
                    send_after=when,
                )
                for i in range(n)
            )
        db.session.add_all(
            InboundEvent(kind=kind, received_at=now, dedupe_key=f"a11y-{i}")
            for i, kind in enumerate([InboundKind.COMPLAINT] * 3 + [InboundKind.HARD_BOUNCE] * 5)
        )
        db.session.commit()


def test_deliverability_page_has_no_serious_or_critical_violations(site, page, axe_js):
    # With data first: the warning is read once a minute per process, and
    # admins land on /admin/, which reads it at sign-in.
    add_mail_and_complaints(site["app"])
    add_user(site["app"], ADMIN_EMAIL, Role.ADMIN)
    page.goto("/login")
    page.fill("input[name=email]", ADMIN_EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("load")
    found: dict[str, list[dict]] = {}
    assert page.goto("/admin/deliverability").status == 200
    assert page.get_by_role("alert").filter(has_text="Spam complaints were 0.30%").is_visible()
    assert page.locator("svg.chart").count() == 2
    found["deliverability"] = audit(page, axe_js, "deliverability")

    with site["app"].app_context():
        db.session.execute(delete(InboundEvent))
        db.session.execute(delete(OutboxMessage))
        db.session.commit()
    assert page.goto("/admin/deliverability").status == 200
    assert page.locator("text=No mail was sent in the last 30 days").count() == 1
    found["deliverability-empty"] = audit(page, axe_js, "deliverability-empty")

    blocking = {label: v for label, v in found.items() if v}
    assert not blocking, "\n".join(f"--- {k}\n{describe(v)}" for k, v in blocking.items())


def test_account_pages_have_no_serious_or_critical_violations(site, page, axe_js):
    """The account page, 2FA setup, recovery codes, the code step, the
    password reset request and the users page with a pending invitation."""
    email = "account.a11y@example.com"
    add_user(site["app"], email, Role.ADMIN)
    context = page.context.browser.new_context(base_url=site["url"], bypass_csp=True)
    tab = context.new_page()
    found: dict[str, list[dict]] = {}

    def sign_in() -> None:
        tab.goto("/login")
        tab.fill("input[name=email]", email)
        tab.fill("input[name=password]", PASSWORD)
        tab.click("button[type=submit]")
        tab.wait_for_load_state("load")

    sign_in()
    assert tab.goto("/account/").status == 200
    found["account"] = audit(tab, axe_js, "account")
    assert tab.goto("/account/2fa/setup").status == 200
    found["two-factor-setup"] = audit(tab, axe_js, "two-factor-setup")
    totp = pyotp.TOTP(tab.inner_text("#totp-secret").strip())
    tab.fill("input[name=code]", totp.now())
    tab.click("form.admin-form button[type=submit]")
    tab.wait_for_load_state("load")
    assert tab.locator("#recovery-codes li").count() == 10
    found["recovery-codes"] = audit(tab, axe_js, "recovery-codes")
    tab.goto("/admin/users")
    tab.fill("#invite ~ form input[name=email]", "invited.a11y@example.com")
    tab.click("#invite ~ form button[type=submit]")
    tab.wait_for_load_state("load")
    found["users-with-invitation"] = audit(tab, axe_js, "users-with-invitation")

    context.clear_cookies()
    sign_in()
    assert tab.url.endswith("/login/code")
    found["login-code"] = audit(tab, axe_js, "login-code")
    context.clear_cookies()
    assert tab.goto("/password/forgot").status == 200
    found["forgot"] = audit(tab, axe_js, "forgot")
    tab.fill("input[name=email]", email)
    tab.click("form button[type=submit]")
    tab.wait_for_load_state("load")
    found["reset-sent"] = audit(tab, axe_js, "reset-sent")
    context.close()

    blocking = {label: v for label, v in found.items() if v}
    assert not blocking, "\n".join(f"--- {k}\n{describe(v)}" for k, v in blocking.items())


def test_api_docs_and_tokens_pages_have_no_serious_or_critical_violations(site, page, axe_js):
    found: dict[str, list[dict]] = {}
    assert page.goto("/api/v1/docs").status == 200
    assert page.locator("text=POST /api/v1/subscribe").count() >= 1
    found["api-docs"] = audit(page, axe_js, "api-docs")

    page.context.clear_cookies()
    add_user(site["app"], "tokens@example.com", Role.MARKETER)
    page.goto("/login")
    page.fill("input[name=email]", "tokens@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("load")
    assert page.goto("/account/tokens").status == 200
    found["api-tokens-empty"] = audit(page, axe_js, "api-tokens-empty")
    page.fill("input[name=name]", "CRM sync")
    page.select_option("select[name=scope]", "read")
    page.click("text=Create token")
    page.wait_for_load_state("load")
    assert page.locator("#new-token").input_value().startswith("lk_")
    found["api-tokens-new"] = audit(page, axe_js, "api-tokens-new")

    blocking = {label: v for label, v in found.items() if v}
    assert not blocking, "\n".join(f"--- {k}\n{describe(v)}" for k, v in blocking.items())
