"""Compressed responses (gzip, brotli where accepted) kept by the public page
cache per coding, and static files under hashed URLs."""

from __future__ import annotations

import gzip
import re
from datetime import timedelta

import brotli
import pytest
from flask import request_started

from services.leads import signup_guard
from tests.helpers import T0
from web.compression import coding_for
from web.static_urls import IMMUTABLE

ARTICLE = "/cspo-certification-benefits"
PAGES = ["/", ARTICLE, "/certified-scrum-product-owner-cspo-training", "/feed.xml"]


@pytest.fixture
def app_requests(app):
    """Requests that reached the Flask app (a cache hit never does): a
    counter, not a clock."""
    seen: list[str] = []

    def count(sender, **extra):
        from flask import request

        seen.append(request.path)

    request_started.connect(count, app)
    yield seen
    request_started.disconnect(count, app)


@pytest.mark.parametrize(
    ("accept", "coding"),
    [
        ("gzip, deflate, br, zstd", "br"),
        ("gzip, deflate", "gzip"),
        ("br;q=0.5, gzip", "gzip"),
        ("*", "br"),
        ("identity", "identity"),
        ("", "identity"),
        ("gzip;q=0, br;q=0", "identity"),
    ],
)
def test_coding_for_takes_brotli_then_gzip(accept, coding):
    assert coding_for(accept) == coding


@pytest.mark.parametrize("path", PAGES)
def test_gzip_and_brotli_decode_to_the_same_bytes(client, frozen, path):
    plain = client.get(path)
    zipped = client.get(path, headers={"Accept-Encoding": "gzip"})
    brot = client.get(path, headers={"Accept-Encoding": "gzip, deflate, br"})
    assert "Content-Encoding" not in plain.headers
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert brot.headers["Content-Encoding"] == "br"
    assert gzip.decompress(zipped.data) == plain.data
    assert brotli.decompress(brot.data) == plain.data
    assert len(brot.data) < len(plain.data) / 2
    for r in (plain, zipped, brot):
        assert "Accept-Encoding" in r.headers["Vary"]
        assert "Cookie" in r.headers["Vary"]
        assert int(r.headers["Content-Length"]) == len(r.data)
    # One validator per representation.
    assert len({plain.headers["ETag"], zipped.headers["ETag"], brot.headers["ETag"]}) == 3


def test_a_second_request_is_served_compressed_from_the_cache(client, frozen, app_requests):
    br = {"Accept-Encoding": "br"}
    first = client.get(ARTICLE, headers=br)
    assert app_requests == [ARTICLE]  # rendered and compressed once
    again = client.get(ARTICLE, headers=br)
    other_client = client.get(ARTICLE, headers={"Accept-Encoding": "gzip, deflate, br"})
    assert app_requests == [ARTICLE]  # neither reached the app: nothing compressed again
    assert again.data == first.data == other_client.data
    assert again.headers["Content-Encoding"] == "br"
    # gzip is its own entry: one more render, then cached as well.
    client.get(ARTICLE, headers={"Accept-Encoding": "gzip"})
    client.get(ARTICLE, headers={"Accept-Encoding": "gzip"})
    assert app_requests == [ARTICLE, ARTICLE]


def test_conditional_gets_are_304_per_coding(client, frozen, app_requests):
    br = client.get(ARTICLE, headers={"Accept-Encoding": "br"})
    plain = client.get(ARTICLE)
    r = client.get(ARTICLE, headers={"Accept-Encoding": "br", "If-None-Match": br.headers["ETag"]})
    assert r.status_code == 304
    assert r.data == b""
    assert "Content-Encoding" not in r.headers
    assert r.headers["ETag"] == br.headers["ETag"]
    # The plain copy's tag does not validate the compressed one, nor the reverse.
    r = client.get(
        ARTICLE, headers={"Accept-Encoding": "br", "If-None-Match": plain.headers["ETag"]}
    )
    assert r.status_code == 200
    assert r.headers["Content-Encoding"] == "br"
    r = client.get(ARTICLE, headers={"If-None-Match": br.headers["ETag"]})
    assert r.status_code == 200
    assert "Content-Encoding" not in r.headers
    assert app_requests == [ARTICLE, ARTICLE]  # all from the two entries


def test_a_new_period_renders_each_coding_again(client, frozen):
    first = client.get(ARTICLE, headers={"Accept-Encoding": "br"})
    frozen.set(T0 + timedelta(seconds=signup_guard.STAMP_SECONDS))
    later = client.get(ARTICLE, headers={"Accept-Encoding": "br"})
    assert later.headers["Content-Encoding"] == "br"
    old, new = brotli.decompress(first.data), brotli.decompress(later.data)
    assert old != new  # a new time stamp in the forms
    assert later.headers["ETag"] == first.headers["ETag"]  # the same page for caches


def test_css_and_js_are_compressed_and_small_bodies_are_not(client):
    for path, coding in [
        ("/static/css/site.css", "br"),
        ("/static/js/signup.js", "gzip"),
    ]:
        r = client.get(path, headers={"Accept-Encoding": coding})
        plain = client.get(path)
        decode = brotli.decompress if coding == "br" else gzip.decompress
        assert r.headers["Content-Encoding"] == coding, path
        assert decode(r.data) == plain.data
        assert "Accept-Encoding" in r.headers["Vary"]
    # The SVG icon is under Flask-Compress's 500-byte floor: not worth a coding.
    r = client.get("/static/favicon.svg", headers={"Accept-Encoding": "br"})
    assert r.status_code == 200
    assert "Content-Encoding" not in r.headers
    assert r.data.startswith(b"<svg")


def test_staff_pages_are_compressed_per_request(app, client):
    from models import Role
    from tests.helpers import sign_in_as

    sign_in_as(app, client, Role.ADMIN)
    r = client.get("/marketing/leads", headers={"Accept-Encoding": "br"})
    assert r.status_code == 200
    assert r.headers["Content-Encoding"] == "br"
    assert b"<!doctype html>" in brotli.decompress(r.data)
    assert "no-store" in r.headers["Cache-Control"]


# --- Hashed static URLs


def _asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:href|src)="(/static/[^"]+)"', html)


def test_pages_link_static_files_by_content_hash(client):
    urls = _asset_urls(client.get(ARTICLE).get_data(as_text=True))
    assert {u.split("?")[0] for u in urls} >= {
        "/static/css/site.css",
        "/static/js/signup.js",
        "/static/favicon.svg",
    }
    for url in urls:
        assert re.search(r"\?v=[0-9a-f]{12}$", url), url
        r = client.get(url)
        assert r.status_code == 200
        assert r.headers["Cache-Control"] == IMMUTABLE


def test_a_stale_or_missing_hash_still_serves_without_immutable(client):
    url = next(u for u in _asset_urls(client.get("/").get_data(as_text=True)) if "site.css" in u)
    current = client.get(url)
    for stale in ("/static/css/site.css?v=000000000000", "/static/css/site.css"):
        r = client.get(stale)
        assert r.status_code == 200
        assert r.data == current.data
        assert "immutable" not in r.headers.get("Cache-Control", "")
    assert client.get("/static/css/missing.css?v=abc").status_code == 404


def test_a_changed_file_gets_a_new_hash(app, tmp_path):
    from flask import url_for

    from web.static_urls import StaticHashes

    (tmp_path / "a.css").write_text("a { color: red }")
    hashes = StaticHashes(str(tmp_path))
    before = hashes.of("a.css")
    (tmp_path / "a.css").write_text("a { color: blue }")
    assert hashes.of("a.css") != before
    assert hashes.of("../etc/passwd") is None
    with app.test_request_context():
        assert url_for("static", filename="nope.css") == "/static/nope.css"
