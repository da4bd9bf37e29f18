"""What search engines, social networks and feed readers read: robots.txt,
the sitemap, the Atom feed, canonical links and noindex, sharing markup and
JSON-LD, and the helpful 404 a reader of a dangling link lands on."""

from __future__ import annotations

import json
import re
import urllib.robotparser
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, time

import feedparser
import pytest

from extensions import db
from models import Lead
from services import clock
from services.content import TRAINING_PATH
from tests.factories import make_class
from tests.helpers import T0, browser_headers, form_fields, start_tags

SITE = "http://localhost"
ARTICLE = "/cspo-certification-benefits"
INDEXABLE_PAGES = ["/", ARTICLE, TRAINING_PATH]
SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"


def _head_tags(html: str, tag: str) -> list[dict]:
    head = html.split("</head>", 1)[0]
    return [attrs for name, attrs in start_tags(head) if name == tag]


def _meta(html: str, key: str) -> str | None:
    for attrs in _head_tags(html, "meta"):
        if key in (attrs.get("property"), attrs.get("name")):
            return attrs.get("content")
    return None


def _json_ld(html: str) -> list[dict]:
    blocks = re.findall(r'<script type="application/ld\+json">(.*?)</script>', html, re.S)
    return [json.loads(b) for b in blocks]


# --- robots.txt


def test_robots_txt_keeps_crawlers_off_token_and_staff_pages(client):
    r = client.get("/robots.txt")
    assert r.status_code == 200
    assert r.mimetype == "text/plain"
    robots = urllib.robotparser.RobotFileParser()
    robots.parse(r.get_data(as_text=True).splitlines())
    for path in [
        "/confirm/abc",
        "/preferences/abc",
        "/unsubscribe/abc",
        "/admin/",
        "/marketing/leads",
        "/account",
        "/api/v1/leads",
        "/login",
        "/subscribe/thanks",
    ]:
        assert not robots.can_fetch("Googlebot", f"{SITE}{path}"), path
    for path in [*INDEXABLE_PAGES, "/feed.xml", "/sitemap.xml", "/static/img/share.png"]:
        assert robots.can_fetch("Googlebot", f"{SITE}{path}"), path
    assert robots.site_maps() == [f"{SITE}/sitemap.xml"]


# --- sitemap.xml


def test_sitemap_lists_home_articles_and_training_with_lastmod(app, client, frozen):
    with app.app_context():
        make_class()
        db.session.commit()
    r = client.get("/sitemap.xml")
    assert r.status_code == 200
    assert r.mimetype == "application/xml"
    root = ET.fromstring(r.data)  # noqa: S314 (the app's own sitemap)
    assert root.tag == f"{SITEMAP_NS}urlset"
    urls = {
        u.find(f"{SITEMAP_NS}loc").text: u.find(f"{SITEMAP_NS}lastmod").text
        for u in root.findall(f"{SITEMAP_NS}url")
    }
    assert set(urls) == {f"{SITE}{p}" for p in INDEXABLE_PAGES}
    # Only loc and lastmod, as the sitemaps.org schema allows.
    for url in root.findall(f"{SITEMAP_NS}url"):
        assert [c.tag for c in url] == [f"{SITEMAP_NS}loc", f"{SITEMAP_NS}lastmod"]
    # The article's front matter date; the training page's latest class change.
    assert urls[f"{SITE}{ARTICLE}"] == "2023-09-06T00:00:00+00:00"
    assert urls[f"{SITE}/"] == "2023-09-06T00:00:00+00:00"
    assert datetime.fromisoformat(urls[f"{SITE}{TRAINING_PATH}"]) == T0


def test_a_saved_class_moves_the_training_lastmod(app, client, frozen):
    with app.app_context():
        cls = make_class()
        db.session.commit()
        frozen.set(datetime(2026, 5, 1, 12, 0, tzinfo=UTC))
        cls.title = "CSPO online, renamed"
        db.session.commit()
        assert cls.updated_at == clock.now()


def test_lastmod_prefers_updated_then_date_then_the_files_time(app_config, tmp_path):
    from app import create_app

    content = tmp_path / "content"
    content.mkdir()
    (content / "one.md").write_text(
        '---\ntitle: One\ndate: "2024-01-02"\nupdated: "2024-03-04"\n---\n\nText.\n'
    )
    (content / "two.md").write_text("---\ntitle: Two\n---\n\nText.\n")
    app = create_app({**app_config, "CONTENT_DIR": str(content)})
    with app.app_context():
        db.create_all() if app_config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite") else None
    root = ET.fromstring(app.test_client().get("/sitemap.xml").data)  # noqa: S314
    urls = {
        u.find(f"{SITEMAP_NS}loc").text: u.find(f"{SITEMAP_NS}lastmod")
        for u in root.findall(f"{SITEMAP_NS}url")
    }
    assert urls[f"{SITE}/one"].text == "2024-03-04T00:00:00+00:00"
    mtime = datetime.fromtimestamp(int((content / "two.md").stat().st_mtime), UTC)
    assert datetime.fromisoformat(urls[f"{SITE}/two"].text) == mtime


# --- The Atom feed


def test_the_feed_is_atom_with_what_rfc_4287_requires(client):
    r = client.get("/feed.xml")
    assert r.status_code == 200
    assert r.mimetype == "application/atom+xml"
    feed = feedparser.parse(r.data)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.id == f"{SITE}/"
    assert feed.feed.title == "Scrum Academy: articles"
    assert feed.feed.author == "Scrum Academy"
    assert feed.feed.updated_parsed[:3] == (2023, 9, 6)
    links = {link.rel: link.href for link in feed.feed.links}
    assert links == {"self": f"{SITE}/feed.xml", "alternate": f"{SITE}/"}
    [entry] = feed.entries
    assert entry.id == f"{SITE}{ARTICLE}"
    assert entry.title == "CSPO Certification Benefits"
    assert entry.link == f"{SITE}{ARTICLE}"
    assert entry.updated_parsed[:3] == (2023, 9, 6)
    assert entry.published_parsed[:3] == (2023, 9, 6)
    assert entry.summary.startswith("Things change so quickly")


@pytest.mark.parametrize("path", [*INDEXABLE_PAGES, "/subscribe", "/login", "/nowhere"])
def test_every_page_links_the_feed(client, path):
    html = client.get(path).get_data(as_text=True)
    feeds = [a for a in _head_tags(html, "link") if a.get("type") == "application/atom+xml"]
    assert feeds == [
        {
            "rel": "alternate",
            "type": "application/atom+xml",
            "title": "Scrum Academy: articles",
            "href": "/feed.xml",
        }
    ]


# --- Canonical links and noindex


@pytest.mark.parametrize("path", INDEXABLE_PAGES)
def test_indexable_pages_have_a_canonical_link_and_no_noindex(client, path):
    r = client.get(f"{path}?utm_source=linkedin")
    assert r.status_code == 200
    canonical = [
        a["href"]
        for a in _head_tags(r.get_data(as_text=True), "link")
        if a.get("rel") == "canonical"
    ]
    assert canonical == [f"{SITE}{path}"]
    assert "X-Robots-Tag" not in r.headers


def _noindex_paths(app) -> list[str]:
    """Every GET route without parameters that is not an indexable page,
    plus the token pages with a made-up token."""
    from web.seo import INDEXABLE

    fixed = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if "GET" in rule.methods and not rule.arguments and rule.endpoint not in INDEXABLE
    ]
    return [
        *fixed,
        "/confirm/x",
        "/preferences/x",
        "/unsubscribe/x",
        "/nowhere",
        "/nowhere-article",
    ]


def test_every_other_page_says_noindex_and_has_no_canonical(app, client):
    paths = _noindex_paths(app)
    assert {"/login", "/subscribe", "/subscribe/thanks", "/healthz"} <= set(paths)
    for path in paths:
        r = client.get(path)
        assert r.headers.get("X-Robots-Tag") == "noindex", path
        if r.mimetype == "text/html":
            links = _head_tags(r.get_data(as_text=True), "link")
            assert not [a for a in links if a.get("rel") == "canonical"], path


def test_staff_pages_say_noindex_too(app, client):
    from models import Role
    from tests.helpers import sign_in_as

    sign_in_as(app, client, Role.ADMIN)
    for path in ["/admin/", "/marketing/", "/marketing/leads", "/admin/classes"]:
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["X-Robots-Tag"] == "noindex"


# --- Sharing markup and JSON-LD


def test_article_has_share_image_twitter_card_and_article_json_ld(client):
    html = client.get(ARTICLE).get_data(as_text=True)
    image = _meta(html, "og:image")
    assert re.fullmatch(rf"{SITE}/static/img/share\.png\?v=[0-9a-f]{{12}}", image)
    assert _meta(html, "og:image:width") == "1200"
    assert _meta(html, "og:image:height") == "630"
    assert _meta(html, "og:image:alt")
    assert _meta(html, "twitter:card") == "summary_large_image"
    [ld] = _json_ld(html)
    assert ld["@context"] == "https://schema.org"
    assert ld["@type"] == "Article"
    assert ld["headline"] == "CSPO Certification Benefits"
    assert ld["datePublished"] == "2023-09-06"
    assert ld["image"] == [image]
    assert ld["mainEntityOfPage"] == f"{SITE}{ARTICLE}"
    # The image is there, and is the 1200x630 PNG the markup says.
    png = client.get(image.removeprefix(SITE)).data
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(png[16:20]), int.from_bytes(png[20:24])) == (1200, 630)


def test_front_matter_image_overrides_the_share_image(app_config, tmp_path):
    from app import create_app

    content = tmp_path / "content"
    content.mkdir()
    (content / "one.md").write_text(
        "---\ntitle: One\nimage: https://cdn.example.com/one.png\n"
        "image_alt: A backlog on a wall\n---\n\nText.\n"
    )
    app = create_app({**app_config, "CONTENT_DIR": str(content)})
    html = app.test_client().get("/one").get_data(as_text=True)
    assert _meta(html, "og:image") == "https://cdn.example.com/one.png"
    assert _meta(html, "og:image:alt") == "A backlog on a wall"
    assert _meta(html, "og:image:width") is None  # not known for someone else's image
    assert _json_ld(html)[0]["image"] == ["https://cdn.example.com/one.png"]


def test_training_page_has_course_json_ld_beside_the_event_markup(app, client, frozen):
    with app.app_context():
        make_class(
            title="CSPO online, June 2027",
            start=(date(2027, 6, 10), time(9, 0)),
            trainer="Ada Lovelace",
            price=1195,
            currency="EUR",
        )
        db.session.commit()
    html = client.get(TRAINING_PATH).get_data(as_text=True)
    assert 'itemtype="https://schema.org/Event"' in html
    [ld] = _json_ld(html)
    assert ld["@type"] == "Course"
    assert ld["provider"]["name"] == "Scrum Academy"
    [instance] = ld["hasCourseInstance"]
    assert instance["@type"] == "CourseInstance"
    assert instance["name"] == "CSPO online, June 2027"
    assert instance["courseMode"] == "online"
    assert instance["startDate"] == "2027-06-10T09:00:00+02:00"
    assert instance["instructor"] == {"@type": "Person", "name": "Ada Lovelace"}
    assert instance["offers"]["priceCurrency"] == "EUR"


# --- The 404 a reader of a dangling link lands on


def test_the_404_page_lists_articles_and_its_signup_form_works(app, client):
    path = "/how-hard-is-the-cspo"
    r = client.get(path)
    assert r.status_code == 404
    html = r.get_data(as_text=True)
    assert f'<a href="{ARTICLE}">CSPO Certification Benefits</a>' in html
    assert r.headers["X-Robots-Tag"] == "noindex"
    fields = form_fields(html)
    assert fields["placement"] == "not-found"
    fields.update(email="reader@example.com", name="", topics=["cspo-classes"])
    posted = client.post("/subscribe", data=fields, headers=browser_headers(path))
    assert posted.status_code in (200, 303), posted.status_code
    with app.app_context():
        lead = db.session.execute(db.select(Lead)).scalar_one()
        assert lead.email == "reader@example.com"
        assert lead.source_placement == "not-found"


def test_a_static_image_override_gets_a_hashed_absolute_url(app_config, tmp_path):
    from app import create_app

    content = tmp_path / "content"
    content.mkdir()
    (content / "one.md").write_text("---\ntitle: One\nimage: img/share.png\n---\n\nText.\n")
    app = create_app({**app_config, "CONTENT_DIR": str(content)})
    html = app.test_client().get("/one").get_data(as_text=True)
    assert re.fullmatch(rf"{SITE}/static/img/share\.png\?v=[0-9a-f]{{12}}", _meta(html, "og:image"))
    assert _meta(html, "og:image:alt") == "One"  # the title when no image_alt is given


@pytest.mark.parametrize(
    "image", ["/etc/passwd.png", "../secret.png", "http://plain.example/a.png", "img/a.svg", "[1]"]
)
def test_an_image_that_is_neither_a_static_file_nor_https_is_refused(tmp_path, image):
    from services.content import ContentError, parse_article

    path = tmp_path / "one.md"
    path.write_text(f"---\ntitle: One\nimage: {image}\n---\n\nText.\n")
    with pytest.raises(ContentError, match="image"):
        parse_article(path)
