"""Which pages search engines may index, and the page-level markup they
read: canonical links, the share image.

One rule: the endpoints in INDEXABLE, answered without an error, may be
indexed; every other response says `X-Robots-Tag: noindex`. So token pages
(confirm, preferences, unsubscribe), the thanks and sign-in pages, and any
staff page added later are covered without a list of their own.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request, url_for

INDEXABLE = frozenset(
    {
        "articles.index",
        "articles.article",
        "articles.training",
        "seo.robots",
        "seo.sitemap",
        "seo.feed",
        "static",  # the share image, the favicon
    }
)
# Pages among them that are HTML: they carry a canonical link.
CANONICAL = frozenset({"articles.index", "articles.article", "articles.training"})
SHARE_IMAGE = "img/share.png"
SHARE_IMAGE_SIZE = (1200, 630)


def indexable() -> bool:
    return request.endpoint in INDEXABLE


def _noindex(response: Response) -> Response:
    # A 404 or 410 from an indexable route (an unknown slug) is not a page.
    if not indexable() or response.status_code >= 400:
        response.headers.setdefault("X-Robots-Tag", "noindex")
    return response


def canonical_url() -> str | None:
    """This page's address on SITE_URL, without the query (UTM values)."""
    if request.endpoint not in CANONICAL:
        return None
    return current_app.config["SITE_URL"] + request.path


def share_image(article=None) -> dict:
    """The og:image of a page: the article's `image:` from its front matter,
    else the site's default card (whose size is known)."""
    site_url = current_app.config["SITE_URL"]
    image = getattr(article, "image", None)
    if image and image.startswith("https://"):
        return {"url": image, "alt": article.image_alt or article.title}
    if image:
        return {
            "url": site_url + url_for("static", filename=image),
            "alt": article.image_alt or article.title,
        }
    width, height = SHARE_IMAGE_SIZE
    name = current_app.config["SITE_NAME"]
    return {
        "url": site_url + url_for("static", filename=SHARE_IMAGE),
        "alt": f"{name}: articles and Certified Scrum Product Owner training",
        "width": width,
        "height": height,
    }


def init_app(app: Flask) -> None:
    app.after_request(_noindex)
    app.add_template_global(canonical_url)
    app.add_template_global(share_image)
