"""The staff pages QA found wanting, in Chromium against gunicorn: import
mapping selects wide enough for their labels, import figures as label and
number pairs, the lead browser's Source column, the role select beside its
Save button, the API token field with a working Copy button (static/js,
under the CSP), session browser names, the TOTP key in groups that still
reads as one key, and the webhook event checklist with each box on its
label's line. Screenshots: test-artifacts/e2e/polish-*.png."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests import procs
from tests.e2e.chromium import launch_chromium, screenshots

pytestmark = pytest.mark.e2e

ADMIN = "polish@example.com"
PASSWORD = "a long admin password for e2e"
FIXTURE = Path(__file__).parent.parent / "fixtures" / "imports" / "leads_utf8_bom.csv"
TIMEOUT_MS = 15_000
# The width of a select's longest option label in the select's own font.
WIDEST_OPTION = """s => {
  const c = document.createElement("canvas").getContext("2d");
  c.font = getComputedStyle(s).font;
  return Math.max(...[...s.options].map(o => c.measureText(o.text).width));
}"""
# How many lines an element's text takes.
LINES = """el => {
  const r = document.createRange();
  r.selectNodeContents(el);
  return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size;
}"""


def test_staff_pages_after_the_qa_polish(tmp_path):
    env = procs.app_env(tmp_path, f"sqlite:///{tmp_path / 'leads.sqlite3'}", port=procs.free_port())
    procs.flask_db_upgrade(env)
    procs.flask(env, "users", "create", ADMIN, "--role", "admin", "--password", PASSWORD)
    procs.flask(env, "leads", "import", str(FIXTURE), "--topic", "newsletter",
                "--source", "spring-fair-2026", "--consent", "Signed at the fair")  # fmt: skip
    shot = screenshots("polish")
    with procs.gunicorn(env, workers=2) as server, launch_chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        base = server.url
        page.goto(base + "/login?next=/marketing/import/")
        page.get_by_label("Email").fill(ADMIN)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/marketing/import/$"))

        # The finished import: each figure sits in one box with its label.
        page.get_by_role("link", name=FIXTURE.name).first.click()
        pairs = page.locator("dl.figures > div")
        expect(pairs.filter(has_text="New")).to_contain_text("10")
        for pair in pairs.all():
            dt, dd = pair.locator("dt").bounding_box(), pair.locator("dd").bounding_box()
            assert abs(dt["x"] - dd["x"]) < 2, "the number sits under its own label"
        shot(page, "import-done")

        # A new upload's mapping: every select shows its whole label.
        page.goto(base + "/marketing/import/")
        page.get_by_label(re.compile("^CSV file")).set_input_files(str(FIXTURE))
        page.get_by_label("Newsletter").check()
        page.get_by_label(re.compile("^Basis of consent")).fill("Agile Days 2025 stand")
        page.get_by_role("button", name="Upload").click()
        selects = page.locator("table.mapping select")
        assert selects.count() >= 3
        for select in selects.all():
            widest = select.evaluate(WIDEST_OPTION)
            assert select.evaluate("s => s.clientWidth") >= widest + 16, "labels fit"
        shot(page, "import-mapping")

        page.goto(base + "/marketing/leads?source=spring-fair-2026")
        expect(page.get_by_label("Source", exact=True)).to_have_value("spring-fair-2026")
        expect(page.locator("table")).to_contain_text("import spring-fair-2026")
        shot(page, "leads-source")

        page.goto(base + "/admin/users")
        role = page.get_by_label(f"Role of {ADMIN}")
        save = page.locator(".user-form button").first
        assert role.bounding_box()["height"] >= save.bounding_box()["height"] - 4
        assert role.bounding_box()["width"] >= 120
        shot(page, "users")

        page.goto(base + "/account/tokens")
        page.get_by_label("Name").fill("CRM")
        page.get_by_role("button", name="Create token").click()
        token = page.locator("#new-token")
        assert token.evaluate("t => getComputedStyle(t).fontFamily").startswith("ui-monospace")
        assert token.bounding_box()["width"] > 500
        page.get_by_role("button", name="Copy").click()
        expect(page.locator(".copy-status")).to_have_text("Copied.")
        assert page.evaluate("navigator.clipboard.readText()") == token.input_value()
        shot(page, "token-made")

        page.goto(base + "/account/")
        expect(page.locator("tbody th[scope=row]").first).to_have_text(
            re.compile(r"Chrome on Linux")
        )
        for stamp in page.locator("td.nowrap").all():
            assert stamp.evaluate(LINES) == 1, "a date on one line"
        shot(page, "account")

        page.goto(base + "/account/2fa/setup")
        key = page.locator("#totp-secret")
        assert key.inner_text().strip() == key.get_attribute("data-secret")
        assert key.locator("span").count() >= 8
        shot(page, "2fa-setup")

        page.goto(base + "/admin/webhooks")
        first = page.locator(".admin-form fieldset li").first
        box = first.locator("input").bounding_box()
        label = first.locator("label").bounding_box()
        assert abs((box["y"] + box["height"] / 2) - (label["y"] + label["height"] / 2)) < 6
        assert first.evaluate("li => getComputedStyle(li).listStyleType") == "none"
        shot(page, "webhooks")
        assert errors == []

    # Without JavaScript the Copy button stays hidden; the field still works.
    with procs.gunicorn(env, workers=1) as server, launch_chromium() as browser:
        page = browser.new_context(java_script_enabled=False).new_page()
        page.goto(server.url + "/login?next=/account/tokens")
        page.get_by_label("Email").fill(ADMIN)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_label("Name").fill("Sheet")
        page.get_by_role("button", name="Create token").click()
        expect(page.locator("#new-token")).to_have_value(re.compile("^lk_"))
        expect(page.get_by_role("button", name="Copy")).to_be_hidden()
