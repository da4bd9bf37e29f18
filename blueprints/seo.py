"""/robots.txt, /sitemap.xml and the Atom feed /feed.xml: public pages,
cached and compressed like the articles (web/public_pages.py)."""

from __future__ import annotations

from flask import Blueprint, current_app

from services import site_index
from web import public_pages

bp = Blueprint("seo", __name__)


def _articles():
    return current_app.extensions["articles"].all()


@bp.get("/robots.txt")
def robots():
    return public_pages.serve(
        "seo/robots.txt",
        lambda: {"disallowed": site_index.DISALLOWED_PATHS},
        mimetype="text/plain",
    )


@bp.get("/sitemap.xml")
def sitemap():
    site_url = current_app.config["SITE_URL"]
    return public_pages.serve(
        "seo/sitemap.xml",
        lambda: {"entries": site_index.sitemap(site_url, _articles())},
        mimetype="application/xml",
    )


@bp.get("/feed.xml")
def feed():
    articles = _articles()
    updated = site_index.feed_updated(articles)
    return public_pages.serve(
        "seo/feed.xml",
        lambda: {"articles": articles, "updated": updated},
        last_modified=updated,
        mimetype="application/atom+xml",
    )
