"""The marketer dashboard: the funnel per article and per form placement, with
article views counted on the server (no cookies, no bots), the signups chart
as server-side SVG, top UTM sources, and the rollup matching a rebuild."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from sqlalchemy import select

from extensions import db
from models import PageViewDaily, SignupStatsDaily
from services.leads import signup, subscriptions
from services.leads.signup import SignupRequest
from services.leads.subscriptions import Evidence
from services.reporting import dashboard, funnel
from tests.helpers import sign_in_as

NOW = datetime(2026, 4, 15, 10, 0, tzinfo=UTC)
ARTICLE = "cspo-certification-benefits"
OTHER = "how-hard-is-the-cspo"
TRAINING = "certified-scrum-product-owner-cspo-training"
BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
]
BOTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "facebookexternalhit/1.1",
    "",
]


@pytest.fixture
def app_config(app_config):
    return {**app_config, "VIEW_FLUSH_SECONDS": 0}


@pytest.fixture
def staff(app, client):
    sign_in_as(app, client)
    return client


def join(frozen, email, slug, placement, *, utm_source=None, when=NOW - timedelta(days=1)):
    frozen.set(when)
    signup.subscribe(
        SignupRequest(
            email=email,
            topics=["newsletter"],
            placement=placement,
            source_slug=slug,
            utm={"utm_source": utm_source} if utm_source else {},
        ),
        Evidence(ip="203.0.113.1", user_agent="test"),
    )
    db.session.commit()


def confirm(frozen, email, when=NOW - timedelta(hours=20)):
    frozen.set(when)
    lead = subscriptions.lead_by_email(email)
    assert subscriptions.confirm(lead, when, Evidence()) == subscriptions.ConfirmResult.CONFIRMED
    db.session.commit()


def unsubscribe(frozen, email, when=NOW - timedelta(hours=10)):
    frozen.set(when)
    assert subscriptions.unsubscribe(subscriptions.lead_by_email(email), "link", Evidence())
    db.session.commit()


def funnel_story(app, frozen) -> None:
    """Signups over three days on two articles, the training page and the
    plain signup page; a duplicate; confirmations; unsubscribes."""
    with app.app_context():
        join(
            frozen,
            "a1@example.com",
            ARTICLE,
            "inline",
            utm_source="linkedin",
            when=NOW - timedelta(2),
        )
        join(frozen, "a2@example.com", ARTICLE, "inline")
        join(frozen, "a3@example.com", ARTICLE, "inline", utm_source="linkedin")
        join(frozen, "a4@example.com", ARTICLE, "end", when=NOW - timedelta(hours=2))
        join(frozen, "a5@example.com", ARTICLE, "end", when=NOW - timedelta(hours=1))
        join(frozen, "a1@example.com", ARTICLE, "inline")  # again: a submission, not a signup
        join(frozen, "b1@example.com", OTHER, "inline", utm_source="google")
        join(frozen, "t1@example.com", TRAINING, "training", when=NOW - timedelta(days=40))
        join(frozen, "p1@example.com", None, "page")
        for email in ("a1@example.com", "a2@example.com", "a4@example.com", "t1@example.com"):
            confirm(frozen, email, when=NOW - timedelta(minutes=30))
        unsubscribe(frozen, "a2@example.com", when=NOW - timedelta(minutes=20))
        unsubscribe(frozen, "p1@example.com", when=NOW - timedelta(minutes=10))
    frozen.set(NOW)


def view(client, slug: str, user_agent: str):
    return client.get(f"/{slug}", headers={"User-Agent": user_agent})


def section(html: str, heading_id: str) -> str:
    start = html.index(f'id="{heading_id}"')
    end = html.find("</section>", start)
    return html[start:end]


def table_rows(html: str) -> dict[str, list[str]]:
    """{row heading: [cell texts]} of the tables in html."""
    rows = {}
    for tr in re.findall(r"<tr>(.*?)</tr>", html, re.S):
        cells = [
            unescape(re.sub(r"<[^>]+>", "", c)).strip()
            for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)
        ]
        if cells and 'scope="row"' in tr:
            rows[cells[0]] = cells[1:]
    return rows


# --- The funnel.


def test_funnel_by_article_and_placement(app, staff, frozen):
    funnel_story(app, frozen)
    for _ in range(4):
        for ua in BROWSERS:
            assert view(staff, ARTICLE, ua).status_code == 200  # 12 views
    for ua in BOTS:
        assert view(staff, ARTICLE, ua).status_code == 200  # none counted

    with app.app_context():
        by_article = {r.key: r for r in dashboard.funnel_by_article()}
        by_placement = {r.key: r for r in dashboard.funnel_by_placement()}
    a = by_article[ARTICLE]
    assert (a.views, a.submissions, a.signups, a.confirmed, a.unsubscribed) == (12, 6, 5, 3, 1)
    assert a.signup_rate == pytest.approx(5 / 12)
    assert a.confirm_rate == pytest.approx(3 / 5)
    assert a.unsubscribe_rate == pytest.approx(1 / 3)
    b = by_article[OTHER]
    assert (b.views, b.submissions, b.signups, b.confirmed, b.unsubscribed) == (0, 1, 1, 0, 0)
    assert b.signup_rate is None and b.confirm_rate == 0
    t = by_article[TRAINING]
    assert (t.submissions, t.signups, t.confirmed, t.unsubscribed) == (1, 1, 1, 0)
    p = by_article["(unknown)"]
    assert (p.submissions, p.signups, p.confirmed, p.unsubscribed) == (1, 1, 0, 1)
    assert set(by_article) == {ARTICLE, OTHER, TRAINING, "(unknown)"}
    assert next(iter(by_article)) == ARTICLE, "most signups first"

    def counts(r):
        return (r.views, r.submissions, r.signups, r.confirmed, r.unsubscribed)

    assert counts(by_placement["inline"]) == (None, 5, 4, 2, 1)
    assert counts(by_placement["end"]) == (None, 2, 2, 1, 0)
    assert counts(by_placement["training"]) == (None, 1, 1, 1, 0)
    assert counts(by_placement["page"]) == (None, 1, 1, 0, 1)

    html = staff.get("/marketing/").get_data(as_text=True)
    articles = table_rows(section(html, "funnel-article"))
    # views, posts, signups, rate, confirmed, rate, register clicks, rate, unsub., rate
    assert articles[ARTICLE] == ["12", "6", "5", "41.7%", "3", "60.0%", "0", "0.0%", "1", "33.3%"]
    assert articles[OTHER] == ["0", "1", "1", "–", "0", "0.0%", "0", "–", "0", "–"]
    assert articles["(unknown)"] == ["0", "1", "1", "–", "0", "0.0%", "0", "–", "1", "–"]
    placements = table_rows(section(html, "funnel-placement"))
    assert placements["inline"] == ["5", "4", "2", "50.0%", "0", "1"]
    assert placements["end"] == ["2", "2", "1", "50.0%", "0", "0"]
    assert placements["page"] == ["1", "1", "0", "0.0%", "0", "1"]
    # Each row leads to its leads in the browser; "(unknown)" has no filter.
    assert f'href="/marketing/leads?source={ARTICLE}"' in html
    assert 'href="/marketing/leads?placement=inline"' in html
    assert "source=%28unknown%29" not in html and "source=(unknown)" not in html
    utm = table_rows(section(html, "utm"))
    assert utm == {"linkedin": ["2", "1"], "google": ["1", "0"]}
    assert list(utm) == ["linkedin", "google"]


def test_views_are_counted_without_cookies_and_without_bots(app, client, frozen):
    frozen.set(NOW)
    browser = app.test_client()
    counted = view(browser, ARTICLE, BROWSERS[0])
    bot = app.test_client()
    not_counted = view(bot, ARTICLE, BOTS[0])

    def cookie_names(r):
        return {h.split("=", 1)[0] for h in r.headers.getlist("Set-Cookie")}

    # Counting sets no cookie: a counted view carries exactly the cookies a
    # bot's uncounted one does (the session, for the form's CSRF token).
    assert cookie_names(counted) == cookie_names(not_counted)
    with browser.session_transaction() as session:
        assert set(session) <= {"csrf_token", "_fresh"}
    # And needs none: the same browser reading again counts again, a new
    # visitor with no cookie counts too.
    view(browser, ARTICLE, BROWSERS[0])
    view(app.test_client(use_cookies=False), ARTICLE, BROWSERS[1])
    for ua in BOTS:
        view(app.test_client(), ARTICLE, ua)
    with app.app_context():
        rows = db.session.execute(select(PageViewDaily)).scalars().all()
        assert [(r.slug, r.day, r.views) for r in rows] == [(ARTICLE, NOW.date(), 3)]


def test_unknown_pages_and_the_article_list_are_not_views(app, client, frozen):
    frozen.set(NOW)
    client.get("/", headers={"User-Agent": BROWSERS[0]})
    client.get("/no-such-article", headers={"User-Agent": BROWSERS[0]})
    client.head(f"/{ARTICLE}", headers={"User-Agent": BROWSERS[0]})
    with app.app_context():
        assert db.session.execute(select(PageViewDaily)).scalars().all() == []


# --- The rollup against a rebuild from the leads.


def _rollup() -> dict:
    rows = db.session.execute(select(SignupStatsDaily)).scalars().all()
    return {
        (r.day, r.source_slug, r.placement, r.utm_source): (
            r.submissions,
            r.signups,
            r.confirmed,
            r.unsubscribed,
            r.clicks,
        )
        for r in rows
        if (r.signups, r.confirmed, r.unsubscribed, r.submissions, r.clicks) != (0, 0, 0, 0, 0)
    }


def test_rebuild_gives_the_same_figures_as_the_incremental_bumps(app, frozen):
    funnel_story(app, frozen)
    with app.app_context():
        incremental = _rollup()
        assert incremental
        funnel.rebuild()
        db.session.commit()
        assert _rollup() == incremental


def test_rebuild_agrees_for_a_lead_that_unsubscribes_and_comes_back(app, frozen):
    with app.app_context():
        join(frozen, "back@example.com", ARTICLE, "inline", when=NOW - timedelta(hours=5))
        confirm(frozen, "back@example.com", when=NOW - timedelta(hours=4))
        unsubscribe(frozen, "back@example.com", when=NOW - timedelta(hours=3))
        join(frozen, "back@example.com", ARTICLE, "inline", when=NOW - timedelta(hours=2))
        confirm(frozen, "back@example.com", when=NOW - timedelta(hours=1))
        incremental = _rollup()
        funnel.rebuild()
        db.session.commit()
        assert _rollup() == incremental


# --- The chart.


def bars(html: str) -> list[tuple[float, str]]:
    return [
        (float(h), title)
        for h, title in re.findall(
            r'<rect class="bar"[^>]*height="([\d.]+)"><title>([^<]+)</title></rect>', html
        )
    ]


@pytest.mark.parametrize("days", [30, 90])
def test_signups_chart_has_one_bar_per_day(app, staff, days, frozen):
    funnel_story(app, frozen)
    html = staff.get(f"/marketing/?days={days}").get_data(as_text=True)
    assert html.count("<svg") == 1
    assert 'role="img"' in html
    found = bars(html)
    assert len(found) == days
    assert html.count("<rect") == days
    per_day = {title.split(": ")[0]: (height, int(title.split(": ")[1])) for height, title in found}
    today = NOW.date()
    assert list(per_day)[-1] == today.isoformat(), "today is the last bar"
    assert next(iter(per_day)) == (today - timedelta(days=days - 1)).isoformat()
    yesterday = (today - timedelta(days=1)).isoformat()
    # Yesterday: a2, a3, b1, p1 (a1's second submission is no signup).
    assert per_day[yesterday] == (180.0, 4), "the busiest day fills the chart"
    assert per_day[today.isoformat()][1] == 2  # a4, a5
    assert per_day[(today - timedelta(days=2)).isoformat()][1] == 1  # a1
    total = 7 if days == 30 else 8  # t1 signed up 40 days ago
    assert sum(n for _, n in per_day.values()) == total
    assert f"{total} signups in the period; the busiest day had 4." in html
    assert 'aria-current="page"' in html


def test_chart_ignores_odd_days_values(staff):
    html = staff.get("/marketing/?days=100000").get_data(as_text=True)
    assert len(bars(html)) == 30


def test_empty_dashboard(app, staff, frozen):
    frozen.set(NOW)
    r = staff.get("/marketing/")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "No views or signups yet." in html
    assert "No signups yet." in html
    assert "No signups came with UTM parameters yet." in html
    assert "0 signups in the period; the busiest day had 0." in html
    found = bars(html)
    assert len(found) == 30
    assert all(height == 0 for height, _ in found)
    assert "<table" not in html


def test_no_external_resources(staff):
    html = staff.get("/marketing/").get_data(as_text=True)
    assert not re.search(r'(src|href)="(https?:)?//', html)
