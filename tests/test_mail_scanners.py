"""Mail link scanners open every link in a mail, with GET and with HEAD,
before the person reads it (Microsoft Safe Links, Mimecast, Proofpoint...).
In a delivered confirmation mail (and its reminder) none of those requests
may confirm the address or change any row; the page's button (a POST) does.
"""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from html import unescape
from html.parser import HTMLParser

import pytest

from extensions import db
from models import LeadStatus
from services.delivery.worker import Worker
from tests.helpers import ORIGIN, confirm, mail_files, signup, the_lead

EMAIL = "ann@example.com"
SCANNERS = [
    "Mozilla/5.0 (compatible; Microsoft SafeLinks)",
    "Mozilla/5.0 (Windows NT 10.0) Mimecast-URL-Protect",
    "Proofpoint URL Defense",
    # Some scanners present themselves as a browser.
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "",
]
_URL = re.compile(r"https?://[^\s<>\"']+")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: set[str] = set()

    def handle_starttag(self, _tag, attrs):
        self.links.update(v for k, v in attrs if k in ("href", "src") and v)


def links_in(eml: bytes) -> set[str]:
    """Every URL in the mail: in its headers, its text, its HTML's text and
    its href and src attributes."""
    msg = message_from_bytes(eml, policy=policy.default)
    html = msg.get_body(("html",)).get_content()
    found = {url for _name, value in msg.items() for url in _URL.findall(str(value))}
    found |= set(_URL.findall(msg.get_body(("plain",)).get_content()))
    found |= {unescape(url) for url in _URL.findall(html)}
    parser = _Links()
    parser.feed(html)
    # A scanner, like a mail program, leaves out a full stop after a URL.
    return {url.rstrip(".,;:") for url in found} | parser.links


def table_rows() -> dict[str, list[str]]:
    tables = db.metadata.sorted_tables
    rows = {t.name: sorted(map(repr, db.session.execute(t.select()))) for t in tables}
    db.session.rollback()
    return rows


def deliver(app) -> None:
    with app.app_context():
        assert Worker(app).run(once=True).sent >= 1


@pytest.mark.parametrize("mail", ["confirmation", "reminder"])
def test_a_scanner_opening_every_link_confirms_nothing(app, client, mail, frozen):
    assert signup(client, EMAIL, topics=("cspo-classes", "newsletter")).status_code == 303
    deliver(app)
    if mail == "reminder":  # queued at signup, due a day later
        first = set(mail_files(app))
        frozen.advance(hours=app.config["CONFIRM_REMINDER_HOURS"] + 1)
        deliver(app)
        (eml,) = [f.read_bytes() for f in mail_files(app) if f not in first]
    else:
        (eml,) = [f.read_bytes() for f in mail_files(app)]
    links = links_in(eml)
    ours = sorted({link.removeprefix(ORIGIN) or "/" for link in links if link.startswith(ORIGIN)})
    confirm_links = {path for path in ours if path.startswith("/confirm/")}
    assert len(confirm_links) == 1, links
    assert "/" in ours, links  # the site, named in the footer

    scanner = app.test_client(use_cookies=False)
    with app.app_context():
        before = table_rows()
        for path in ours:
            for agent in SCANNERS:
                for method in ("GET", "HEAD", "GET"):
                    r = scanner.open(path, method=method, headers={"User-Agent": agent})
                    assert r.status_code < 400, (method, path, r.status_code)
        assert table_rows() == before
    assert the_lead(app, EMAIL).status == LeadStatus.PENDING

    # The person presses the page's button: that confirms.
    (link,) = confirm_links
    assert "You're in" in confirm(app.test_client(), link).get_data(as_text=True)
    assert the_lead(app, EMAIL).status == LeadStatus.CONFIRMED
