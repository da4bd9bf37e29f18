"""Public pages are the same bytes for every anonymous visitor: no cookie, no
CSRF token, an ETag, a shared-cache Cache-Control, and 304 for a conditional
GET. Signed-in staff see their navigation on a page that is never stored."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from extensions import db
from models import PageViewDaily, Role, TrainingClass
from services.leads import signup_guard
from tests.helpers import T0, csrf_token, sign_in_as

ARTICLE = "/cspo-certification-benefits"
TRAINING = "/certified-scrum-product-owner-cspo-training"
PUBLIC = ["/", ARTICLE, TRAINING, "/subscribe"]


@pytest.mark.parametrize("path", PUBLIC)
def test_anonymous_pages_set_no_cookie_and_carry_no_token(client, path):
    r = client.get(path)
    assert r.status_code == 200
    assert "Set-Cookie" not in r.headers
    html = r.get_data(as_text=True)
    assert "csrf_token" not in html
    assert r.headers["Cache-Control"] == "public, max-age=60, stale-while-revalidate=600"
    assert r.headers["ETag"].startswith('W/"')
    assert "Cookie" in r.headers["Vary"]


@pytest.mark.parametrize("path", PUBLIC)
def test_two_visitors_get_the_same_bytes(app, path, frozen):
    one, two = app.test_client(), app.test_client()
    a = one.get(path, headers={"User-Agent": "Firefox", "Referer": "https://news.example/x"})
    b = two.get(f"{path}?utm_source=linkedin&utm_campaign=q3", headers={"User-Agent": "Safari"})
    assert a.data == b.data
    assert a.headers["ETag"] == b.headers["ETag"]
    assert b"linkedin" not in b.data and b"news.example" not in a.data


@pytest.mark.parametrize("path", PUBLIC)
def test_a_conditional_get_is_a_304(client, path):
    first = client.get(path)
    again = client.get(path, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Cache-Control"].startswith("public")


def test_last_modified_on_articles_and_if_modified_since(client):
    first = client.get(ARTICLE)
    assert first.headers["Last-Modified"]
    again = client.get(ARTICLE, headers={"If-Modified-Since": first.headers["Last-Modified"]})
    assert again.status_code == 304


def test_the_etag_outlives_the_stamp_but_not_the_content(app, client, frozen):
    """The stamp in the forms moves every few seconds: an older copy means
    the same (its stamp still passes the trap), so it is still a 304."""
    first = client.get(ARTICLE)
    frozen.set(T0 + timedelta(minutes=10))
    later = client.get(ARTICLE)
    assert later.data != first.data  # a newer stamp in the forms
    assert later.headers["ETag"] == first.headers["ETag"]
    assert client.get(ARTICLE, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304


def test_the_stamp_changes_at_most_every_few_seconds(client, frozen):
    stamps = set()
    for ms in range(0, signup_guard.STAMP_SECONDS * 1000, 250):
        frozen.set(T0 + timedelta(milliseconds=ms))
        stamps.add(re.search(r'name="started" value="([^"]+)"', client.get(ARTICLE).text)[1])
    assert len(stamps) == 1
    frozen.set(T0 + timedelta(seconds=signup_guard.STAMP_SECONDS))
    assert re.search(r'name="started" value="([^"]+)"', client.get(ARTICLE).text)[1] not in stamps


def test_a_saved_class_shows_on_the_training_page_at_once(app, client):
    before = client.get(TRAINING)
    assert "Upcoming classes" not in before.text
    sign_in_as(app, client, Role.ADMIN)
    token = csrf_token(client, "/admin/classes/new")
    start = (datetime.now(UTC) + timedelta(days=40)).date()
    r = client.post(
        "/admin/classes/new",
        data={
            "csrf_token": token,
            "title": "CSPO Remote, Winter",
            "start_date": start.isoformat(),
            "start_time": "09:00",
            "end_date": (start + timedelta(days=1)).isoformat(),
            "end_time": "17:00",
            "timezone": "Europe/Berlin",
            "online": "y",
            "status": "scheduled",
            "currency": "EUR",
        },
    )
    assert r.status_code == 303, r.get_data(as_text=True)[:2000]
    anonymous = app.test_client()
    after = anonymous.get(TRAINING)
    assert "CSPO Remote, Winter" in after.text
    assert (
        anonymous.get(TRAINING, headers={"If-None-Match": before.headers["ETag"]}).status_code
        == 200
    )
    with app.app_context():
        assert db.session.execute(db.select(TrainingClass)).scalar_one().title


@pytest.mark.parametrize("path", PUBLIC)
def test_staff_see_their_navigation_on_a_private_page(app, client, path):
    sign_in_as(app, client, Role.ADMIN)
    r = client.get(path)
    assert r.status_code == 200
    assert "Sign out" in r.text
    assert "no-store" in r.headers["Cache-Control"] and "private" in r.headers["Cache-Control"]
    # ...and that page never becomes the one anonymous visitors get.
    anonymous = app.test_client().get(path)
    assert "Sign out" not in anonymous.text
    assert anonymous.headers["Cache-Control"].startswith("public")


def test_flashed_messages_never_reach_the_shared_page(app, client):
    sign_in_as(app, client, Role.ADMIN)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/marketing/")})
    # The session now holds "You are signed out." for this visitor's next page.
    page = client.get(ARTICLE)
    assert "You are signed out" not in page.text
    assert "You are signed out" not in app.test_client().get(ARTICLE).text


def test_an_edited_article_file_is_served_anew(app, client, tmp_path, frozen):
    """At the next stamp period: pages are kept that long (a few seconds)."""
    import shutil

    from services.content import ArticleStore

    content = tmp_path / "content"
    shutil.copytree(app.config["CONTENT_DIR"], content)
    app.extensions["articles"] = ArticleStore(content, check_seconds=0)
    first = client.get(ARTICLE)
    source = content / "cspo-certification-benefits.md"
    text = source.read_text()
    source.write_text(text.replace("\n---\n", "\n---\n\nA sentence added today.\n", 1))
    assert "A sentence added today." not in client.get(ARTICLE).text
    frozen.set(T0 + timedelta(seconds=signup_guard.STAMP_SECONDS))
    later = client.get(ARTICLE)
    assert "A sentence added today." in later.text
    assert later.headers["ETag"] != first.headers["ETag"]


def test_views_count_304s_but_not_bots_or_head(app, client):
    browser = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"}
    first = client.get(ARTICLE, headers=browser)
    client.get(ARTICLE, headers={**browser, "If-None-Match": first.headers["ETag"]})
    client.get(ARTICLE, headers={"User-Agent": "Googlebot/2.1"})
    client.head(ARTICLE, headers=browser)
    with app.app_context():
        app.extensions["view_counter"].flush()
        views = db.session.execute(db.select(PageViewDaily.views)).scalars().all()
    assert views == [2]


def test_the_cache_in_front_answers_with_the_same_headers(client, frozen):
    miss = client.get(ARTICLE)
    hit = client.get(ARTICLE)
    assert hit.data == miss.data
    for name in ("ETag", "Cache-Control", "Vary", "Content-Security-Policy", "X-Frame-Options"):
        assert hit.headers[name] == miss.headers[name], name
    head = client.head(ARTICLE)
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Content-Length"] == str(len(miss.data))
    not_modified = client.get(ARTICLE, headers={"If-None-Match": miss.headers["ETag"]})
    assert not_modified.status_code == 304
    assert not_modified.headers["ETag"] == miss.headers["ETag"]
    assert "Content-Type" not in not_modified.headers
    assert (
        "Content-Length" not in not_modified.headers
        or not_modified.headers["Content-Length"] == "0"
    )


def test_staff_cookies_pass_the_cache_by(app, client, frozen):
    client.get(ARTICLE)  # in the cache now
    sign_in_as(app, client, Role.ADMIN)
    assert "Sign out" in client.get(ARTICLE).text


def test_error_pages_and_posts_are_never_kept(client, frozen):
    assert client.get("/no-such-article").status_code == 404
    assert client.get("/no-such-article").status_code == 404
    assert client.post(ARTICLE).status_code == 405


def test_a_render_across_two_stamp_periods_keeps_the_etag(app, client, frozen):
    """The page's two forms may get the stamps of two periods when a render
    straddles their boundary: the ETag must not change for that."""
    etag = client.get(ARTICLE).headers["ETag"]
    frozen.set(T0 + timedelta(seconds=10))
    frozen.step = timedelta(seconds=0.4)  # each look at the clock: stamps change mid-render
    straddled = 0
    for _ in range(5):
        page = client.get(ARTICLE)
        straddled += len(set(re.findall(r'name="started" value="([^"]+)"', page.text))) > 1
        assert page.headers["ETag"] == etag
    assert straddled  # the case this test is about did happen


def test_conditional_gets_alone_keep_the_cache_filled(app, client, frozen):
    """After a page's period ends, a conditional GET renders it again in full
    for the cache and is still answered 304 (it used to pass through to the
    app, uncached, for as long as only conditional GETs came)."""
    browser = {"User-Agent": "Mozilla/5.0 Firefox/140.0"}
    etag = client.get(ARTICLE, headers=browser).headers["ETag"]
    cache = app.extensions["public_pages"]
    for period in range(1, 4):
        frozen.set(T0 + timedelta(seconds=period * signup_guard.STAMP_SECONDS))
        r = client.get(ARTICLE, headers={**browser, "If-None-Match": etag})
        assert r.status_code == 304
        assert cache[("identity", ARTICLE)].expires > frozen.now.timestamp()
    with app.app_context():
        app.extensions["view_counter"].flush()
        assert db.session.execute(db.select(PageViewDaily.views)).scalar_one() == 4
