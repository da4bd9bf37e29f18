"""Pages that are the same for every anonymous visitor: the article list,
the articles, the training page and the signup page.

Each is rendered with Jinja once per stamp period (services.signup_guard:
the time trap's stamp is the only thing in them that moves) and again when
its content version changes, then served as the same bytes to everyone, with
an ETag, Last-Modified where known, and a Cache-Control that lets a shared
cache keep it. Signed-in staff see their navigation: rendered per request,
private, never stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from flask import Response, current_app, render_template, request
from flask_login import current_user

from services import signup_guard

# Shared caches keep a page a minute, then may serve it stale for ten more
# while they fetch it again. A stale page only carries an older time stamp,
# which the time trap accepts (README: "How the public form is protected").
PUBLIC_CACHE_CONTROL = "public, max-age=60, stale-while-revalidate=600"


@dataclass(frozen=True)
class _Page:
    key: tuple
    body: bytes
    etag: str
    last_modified: datetime | None


def staff_signed_in() -> bool:
    # Staff have a session cookie (or a remember cookie): a visit with
    # neither is anonymous without asking Flask-Login to load anyone.
    cfg = current_app.config
    cookies = request.cookies
    if cfg["SESSION_COOKIE_NAME"] not in cookies and (
        cfg.get("REMEMBER_COOKIE_NAME", "remember_token") not in cookies
    ):
        return False
    return current_user.is_authenticated


def serve(
    name: str,
    template: str,
    context: Callable[[], dict],
    *,
    version: object = None,
    last_modified: datetime | None = None,
) -> Response:
    """The page `name` rendered from `template` with `context()`; the cached
    bytes while `version` and the stamp period stay the same."""
    if staff_signed_in() or current_app.debug:
        response = Response(render_template(template, public=False, **context()))
        response.cache_control.private = True
        response.cache_control.no_store = True
        response.vary.add("Cookie")
        return response

    stamp = signup_guard.stamp()
    key = (version, stamp)
    pages: dict[str, _Page] = current_app.extensions.setdefault("public_pages", {})
    page = pages.get(name)
    if page is None or page.key != key:
        body = render_template(template, public=True, **context()).encode()
        # Weak: pages a stamp period apart differ only in the stamp, which
        # means the same (an older stamp passes the trap as well).
        etag = hashlib.sha256(body.replace(stamp.encode(), b"")).hexdigest()[:32]
        page = pages[name] = _Page(key, body, etag, last_modified)

    response = Response(page.body, mimetype="text/html")
    response.set_etag(page.etag, weak=True)
    if page.last_modified is not None:
        response.last_modified = page.last_modified
    response.headers["Cache-Control"] = PUBLIC_CACHE_CONTROL
    response.vary.add("Cookie")  # staff get another page
    return response.make_conditional(request)


def forget(name: str | None = None) -> None:
    """Render again on the next visit (content saved in this process; other
    processes follow within one stamp period, at their next render)."""
    pages = current_app.extensions.setdefault("public_pages", {})
    if name is None:
        pages.clear()
    else:
        pages.pop(name, None)
