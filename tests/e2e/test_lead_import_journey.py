"""A marketer imports a CSV file in Chromium against gunicorn, with a real
`flask worker` process running the dry run and the import: upload, the
guessed mapping, the dry run's counts and refused lines, the import; the
page follows the worker by itself (static/js/import.js, under the CSP) and
offers a Refresh link while it runs. Screenshots: test-artifacts/e2e/import-*.png.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import create_engine, text

from tests import procs
from tests.e2e.chromium import launch_chromium, screenshots

pytestmark = pytest.mark.e2e

MARKETER = "marketer@example.com"
PASSWORD = "correct horse battery staple"
FIXTURE = Path(__file__).parent.parent / "fixtures" / "imports" / "leads_utf8_bom.csv"
TIMEOUT_MS = 30_000


def test_marketer_imports_a_csv_file_and_the_page_follows_the_worker(tmp_path):
    port = procs.free_port()
    env = procs.app_env(tmp_path, f"sqlite:///{tmp_path / 'leads.sqlite3'}", port=port)
    procs.flask_db_upgrade(env)
    procs.flask(env, "users", "create", MARKETER, "--role", "marketer", "--password", PASSWORD)
    worker = procs.worker_proc(env, tmp_path / "worker.log").start()
    shot = screenshots("import")
    try:
        with procs.gunicorn(env, workers=2) as server, launch_chromium() as browser:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))

            page.goto(server.url + "/login?next=/marketing/import/")
            page.get_by_label("Email").fill(MARKETER)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(re.compile(r"/marketing/import/$"))

            page.get_by_label(re.compile("^CSV file")).set_input_files(str(FIXTURE))
            page.get_by_label("Newsletter").check()
            page.get_by_label(re.compile("^Basis of consent")).fill("Agile Days 2025 stand")
            page.get_by_role("button", name="Upload").click()
            expect(page.get_by_role("heading", name=f"Import of {FIXTURE.name}")).to_be_visible()
            expect(page.get_by_label("Email")).to_have_value("email")
            expect(page.get_by_label("Notes")).to_have_value("")
            shot(page, "mapping")

            page.get_by_role("button", name="Check the file (dry run)").click()
            # The script reloads the page when the worker's dry run is done.
            expect(page.get_by_role("button", name="Import 10 leads")).to_be_visible()
            expect(page.locator("table.issues")).to_contain_text("duplicate of line 2")
            shot(page, "dry-run")

            page.get_by_role("button", name="Import 10 leads").click()
            expect(page.locator("[data-k=status]")).to_have_text("done")
            expect(page.locator("[data-k=new]")).to_have_text("10")
            expect(page.get_by_role("link", name="Refresh")).to_have_count(0)
            shot(page, "done")
            assert errors == []
        engine = create_engine(env["DATABASE_URL"])
        with engine.connect() as conn:
            leads = conn.execute(text("SELECT count(*) FROM lead")).scalar()
        engine.dispose()
        assert leads == 10
    finally:
        worker.stop()
