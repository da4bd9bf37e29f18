"""The signup form embedded on a partner's site, in Chromium against gunicorn.

A page on another origin (a small server on another port) frames
/embed/signup; the visitor signs up inside the frame and reads the thanks
there. A site not in EMBED_ALLOWED_ORIGINS cannot frame it: Chromium refuses
the frame, so the form never shows there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import create_engine, text

from tests import procs
from tests.e2e.chromium import launch_chromium

pytestmark = pytest.mark.e2e

FORM_MIN_SECONDS = 1


def _partner(embed_url: str, port: int) -> ThreadingHTTPServer:
    """A site of someone else's, with our form in an iframe."""
    page = (
        "<!doctype html><html lang='en'><title>Partner blog</title><h1>Partner blog</h1>"
        f"<iframe src='{embed_url}' title='Subscribe' width='100%' height='640'"
        " style='border:0' referrerpolicy='no-referrer-when-downgrade'></iframe></html>"
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("embed")
    port = procs.free_port()
    partner_port, stranger_port = procs.free_port(), procs.free_port()
    env = procs.app_env(
        tmp,
        f"sqlite:///{tmp / 'leads.sqlite3'}",
        port=port,
        FORM_MIN_SECONDS=FORM_MIN_SECONDS,
        EMBED_ALLOWED_ORIGINS=f"http://127.0.0.1:{partner_port}",
    )
    procs.flask_db_upgrade(env)
    with procs.gunicorn(env, workers=2) as server:
        embed = f"{server.url}/embed/signup?topics=cspo-classes&source=partner-blog"
        partner, stranger = _partner(embed, partner_port), _partner(embed, stranger_port)
        try:
            yield {
                "db": f"sqlite:///{tmp / 'leads.sqlite3'}",
                "partner": f"http://127.0.0.1:{partner.server_port}/blog/why-cspo",
                "stranger": f"http://127.0.0.1:{stranger.server_port}/",
            }
        finally:
            partner.shutdown()
            stranger.shutdown()


def _lead(db_url: str, email: str):
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT status, source_slug, source_placement, referrer "
                    "FROM lead WHERE email = :e"
                ),
                {"e": email},
            ).first()
    finally:
        engine.dispose()


def test_a_visitor_signs_up_inside_the_partners_frame(sites):
    with launch_chromium() as browser:
        page = browser.new_page()
        page.goto(sites["partner"])
        frame = page.frame_locator("iframe")
        frame.get_by_label("Email address").fill("framed@example.com")
        assert frame.get_by_label("CSPO class announcements").is_checked()
        time.sleep(FORM_MIN_SECONDS + 0.5)  # a person takes longer than the trap
        frame.get_by_role("button", name="Subscribe").click()
        frame.get_by_role("heading", name="Check your inbox").wait_for()
        assert page.url == sites["partner"]  # the partner's page stays; the frame thanks
        assert page.context.cookies() == []
    status, source, placement, referrer = _lead(sites["db"], "framed@example.com")
    assert (status, source, placement) == ("pending", "partner-blog", "embed")
    assert referrer == sites["partner"]


def test_a_site_not_allowed_cannot_show_the_form(sites):
    with launch_chromium() as browser:
        page = browser.new_page()
        page.goto(sites["stranger"])
        time.sleep(1)
        frame = page.frames[1]
        # Chromium blocks the framed document (frame-ancestors): no form in it.
        assert frame.locator("form.signup").count() == 0
