"""What QA found on the staff pages in Chromium and what changed in
behaviour: counts in words ("1 signup"), a browser's name instead of its
User-Agent string, the TOTP key in groups, the lead browser's source filter
offering import labels, and an announcement whose every mail was skipped
saying so instead of showing a full bar. The looks are in e2e/test_page_polish.py."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from extensions import db
from models import MailKind, OutboxMessage, OutboxStatus
from services import clock
from services.leads import subscriptions
from services.staff.browsers import browser_label
from tests.factories import make_lead
from tests.helpers import (
    PASSWORD,
    add_user,
    create_announcement,
    csrf_token,
    drain,
    page_text,
    sign_in_admin,
    sign_in_as,
    signup,
    smtp_settings,
    staff_browser,
    staff_login,
)
from web.template_filters import key_groups, plural

CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


@pytest.fixture
def app_config(app_config, smtp_server):
    return {**app_config, **smtp_settings(smtp_server), "FREQUENCY_CAP_DAYS": 2}


@pytest.mark.parametrize(
    ("count", "words"),
    [(0, "0 signups"), (1, "1 signup"), (2, "2 signups"), (1200, "1,200 signups")],
)
def test_plural_says_one_signup_and_many_signups(count, words):
    assert plural(count, "signup") == words


def test_plural_takes_an_irregular_form():
    assert plural(1, "address", "addresses") == "1 address"
    assert plural(3, "address", "addresses") == "3 addresses"


def test_key_groups_split_a_base32_key_in_fours():
    assert key_groups("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP") == [
        "JBSW", "Y3DP", "EHPK", "3PXP", "JBSW", "Y3DP", "EHPK", "3PXP"
    ]  # fmt: skip
    assert key_groups("ABCDEF") == ["ABCD", "EF"]


@pytest.mark.parametrize(
    ("user_agent", "label"),
    [
        (CHROME_LINUX, "Chrome on Linux"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "Firefox on Windows",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
            "Mobile Safari on iOS",
        ),
        ("curl/8.5.0", "curl"),
        ("", "unknown browser"),
        (None, "unknown browser"),
        ("\x00\x01 nonsense", "unknown browser"),
    ],
)
def test_browser_label_names_browser_and_system(user_agent, label):
    assert browser_label(user_agent) == label


def test_account_sessions_show_the_browser_and_keep_the_full_string_as_title(app):
    add_user(app, "marketer@example.com")
    browser = staff_browser(app, CHROME_LINUX)
    assert staff_login(browser, "marketer@example.com", PASSWORD).status_code == 303
    html = page_text(browser.get("/account/"))
    assert f'<th scope="row" title="{CHROME_LINUX}">Chrome on Linux</th>' in html
    assert re.search(r'<td class="nowrap">\d{4}-\d\d-\d\d \d\d:\d\d</td>', html)


def test_two_factor_key_shows_in_groups_of_four_and_keeps_the_whole_key(app, client):
    sign_in_as(app, client)
    html = page_text(client.get("/account/2fa/setup"))
    found = re.search(
        r'<code id="totp-secret" class="key-groups" data-secret="([A-Z2-7]+)">(.*?)</code>', html
    )
    assert found, "the key and its groups"
    secret, groups = found.groups()
    spans = re.findall(r"<span>([A-Z2-7]+)</span>", groups)
    assert "".join(spans) == secret
    assert all(len(g) == 4 for g in spans[:-1]) and 1 <= len(spans[-1]) <= 4
    assert len(spans) >= 8


def test_dashboard_says_one_signup_not_one_signups(app, client, frozen):
    frozen.set(clock.now())
    assert signup(app.test_client(), "one@example.com").status_code in (200, 303)
    sign_in_as(app, client)
    html = page_text(client.get("/marketing/"))
    assert "1 signup in the period; the busiest day had 1." in html


def test_lead_browser_labels_the_column_source_and_offers_import_labels(
    app, client, runner, tmp_path
):
    path = tmp_path / "fair.csv"
    path.write_text("email,name\nann@example.com,Ann\n", encoding="utf-8")
    result = runner.invoke(
        args=["leads", "import", str(path), "--topic", "cspo-classes",
              "--source", "spring-fair-2026", "--consent", "Signed the list at the fair"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    sign_in_as(app, client)
    html = page_text(client.get("/marketing/leads"))
    assert '<label for="f-source">Source</label>' in html
    option = '<option value="spring-fair-2026" >import: spring-fair-2026</option>'
    assert f'<optgroup label="Imports">{option}</optgroup>' in html
    assert '<th scope="col">Source</th>' in html and '<th scope="col">Article</th>' not in html
    assert '<td><span class="tag">import</span> spring-fair-2026</td>' in html
    filtered = page_text(client.get("/marketing/leads?source=spring-fair-2026"))
    assert "ann@example.com" in filtered
    assert 'value="spring-fair-2026" selected' in filtered


def test_an_announcement_whose_every_mail_was_skipped_says_none_was_sent(app, client, frozen):
    with app.app_context():
        lead = make_lead("capped@example.com")
        db.session.flush()
        at = clock.now() - timedelta(days=1)
        db.session.add(
            OutboxMessage(kind=MailKind.ANNOUNCEMENT, lead_id=lead.id, status=OutboxStatus.SENT,
                          send_after=at, created_at=at, sent_at=at)
        )  # fmt: skip
        db.session.commit()
    sign_in_admin(app, client)
    public_id = create_announcement(client)
    token = csrf_token(client, f"/admin/announcements/{public_id}")
    client.post(
        f"/admin/announcements/{public_id}/schedule",
        data={"csrf_token": token, "timezone": "UTC", "send_now": "1"},
    )
    waiting = page_text(client.get(f"/admin/announcements/{public_id}"))
    assert "The worker plans the sends of due announcements every 15 seconds" in waiting
    assert re.search(r'<p id="nothing-sent"[^>]*hidden', waiting)
    assert '<p id="progress-text" hidden>' in waiting, "no 0 of 0 done while it waits"

    assert drain(app) == {"sent": 0, "skipped": 1, "failed": 0}
    progress = client.get(f"/admin/announcements/{public_id}/progress.json").get_json()
    assert (progress["status"], progress["sent"], progress["skipped"]) == ("sent", 0, 1)
    html = page_text(client.get(f"/admin/announcements/{public_id}"))
    assert re.search(
        r'<p id="nothing-sent" class="notice warning">No mail of this announcement was sent', html
    )
    assert 'data-part="sent" x="0.000" y="0" width="0.000"' in html
    assert 'data-part="skipped" x="0.000" y="0" width="100.000"' in html
    with app.app_context():
        assert subscriptions.lead_by_email("capped@example.com") is not None
