"""Pages that are the same for every anonymous visitor: the article list,
the articles, the training page and the signup page.

`serve` renders one with Jinja and marks the response cacheable: a weak
ETag, Last-Modified where known, a Cache-Control that lets a shared cache keep
it. `PublicPageCache` sits in front of the Flask app like a small reverse
proxy: it keeps each such response until the time trap's stamp moves on
(services.leads.signup_guard, every 2 s), and answers anonymous GETs and HEADs from
it, 304s included, without running the app's request hooks. Signed-in staff
pass through to a private, per-request render with their navigation.

Entries are kept per path and content coding (br, gzip or none: see
web/compression.py), so a page is compressed once per period, not per request.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from flask import Flask, Response, current_app, render_template, request
from flask_login import current_user
from werkzeug.datastructures import Headers
from werkzeug.http import is_resource_modified, parse_cookie, remove_entity_headers

from services import clock
from services.leads import signup_guard
from web.compression import coding_for
from web.hosts import UNTRUSTED_HOST
from web.request_metrics import ENDPOINT_KEY

log = logging.getLogger("leads.public_pages")

# Shared caches keep a page a minute, then may serve it stale for ten more
# while they fetch it again. A stale page only carries an older time stamp,
# which the time trap accepts (README: "How the public form is protected").
PUBLIC_CACHE_CONTROL = "public, max-age=60, stale-while-revalidate=600"
# What serve() leaves in the WSGI environ for the cache in front.
ENVIRON_KEY = "leads.public_page"
_CONDITIONS = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE")


@dataclass(frozen=True)
class _Entry:
    headers: list[tuple[str, str]]
    body: bytes
    etag: str
    last_modified: datetime | None
    expires: float  # clock seconds: the end of the stamp period
    view_slug: str | None
    endpoint: str  # the view that rendered it: the latency label of its hits


def _staff_cookies(app: Flask) -> tuple[str, str]:
    cfg = app.config
    return cfg["SESSION_COOKIE_NAME"], cfg.get("REMEMBER_COOKIE_NAME", "remember_token")


def staff_signed_in() -> bool:
    # Staff have a session cookie (or a remember cookie): a visit with
    # neither is anonymous without asking Flask-Login to load anyone.
    if not any(name in request.cookies for name in _staff_cookies(current_app)):
        return False
    return current_user.is_authenticated


def serve(
    template: str,
    context: Callable[[], dict],
    *,
    last_modified: datetime | None = None,
    view_slug: str | None = None,
    mimetype: str = "text/html",
) -> Response:
    """The page from `template` with `context()`: public and cacheable for
    anonymous visitors; private for staff. `view_slug` names the article
    whose views the cache in front counts."""
    if view_slug and request.method == "GET":  # a 304 is a view too; HEAD is not
        count_view(current_app, view_slug, request.headers.get("User-Agent"))
    if staff_signed_in() or current_app.debug:
        response = Response(render_template(template, public=False, **context()), mimetype=mimetype)
        response.cache_control.private = True
        response.cache_control.no_store = True
        response.vary.add("Cookie")
        return response

    before = signup_guard.stamp()
    body = render_template(template, public=True, **context()).encode()
    # Weak: pages a stamp period apart differ only in the stamp, which
    # means the same (an older stamp passes the trap as well). A render
    # may straddle two periods: both stamps are left out.
    unstamped = body
    for stamp in {before, signup_guard.stamp()}:
        unstamped = unstamped.replace(stamp.encode(), b"")
    response = Response(body, mimetype=mimetype)
    # One tag per coding (RFC 9110 8.8.3.3): Flask-Compress, after this,
    # compresses to the coding the cache in front asked for.
    coding = coding_for(request.headers.get("Accept-Encoding"))
    digest = hashlib.sha256(unstamped).hexdigest()[:32]
    response.set_etag(digest if coding == "identity" else f"{digest}-{coding}", weak=True)
    if last_modified is not None:
        response.last_modified = last_modified
    response.headers["Cache-Control"] = PUBLIC_CACHE_CONTROL
    response.vary.add("Cookie")  # staff get another page
    request.environ[ENVIRON_KEY] = (signup_guard.stamp_expires(), view_slug, request.endpoint)
    return response.make_conditional(request)


def count_view(app: Flask, slug: str, user_agent: str | None) -> None:
    """Counted in memory; written every few seconds (services.reporting.page_views)."""
    counter = app.extensions["view_counter"]
    if counter.count(slug, user_agent):
        try:
            with app.app_context():
                counter.flush()
        except Exception:  # the counts are kept for the next flush; the page still shows
            log.exception("page views not written")


def forget() -> None:
    """Serve every public page anew (a class was saved in this process; other
    processes follow within one stamp period)."""
    current_app.extensions["public_pages"].clear()


class PublicPageCache:
    """WSGI middleware answering anonymous GET/HEAD of public pages from the
    responses `serve` produced, until their stamp period ends."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.wsgi_app = app.wsgi_app
        self.entries: dict[tuple[str, str], _Entry] = {}  # (coding, path)
        self.staff_cookies = _staff_cookies(app)
        app.extensions["public_pages"] = self.entries

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if method not in ("GET", "HEAD") or self._from_staff(environ) or UNTRUSTED_HOST in environ:
            return self.wsgi_app(environ, start_response)
        # The app is asked for exactly the coding the entry is kept under.
        coding = environ["HTTP_ACCEPT_ENCODING"] = coding_for(environ.get("HTTP_ACCEPT_ENCODING"))
        key = (coding, environ.get("PATH_INFO", ""))
        entry = self.entries.get(key)
        if entry is None:
            return self._fill(key, environ, start_response)
        if clock.now().timestamp() < entry.expires:
            return self._answer(entry, environ, start_response)
        return self._refresh(key, environ, start_response)

    def _from_staff(self, environ: dict) -> bool:
        if "HTTP_COOKIE" not in environ:
            return False
        cookies = parse_cookie(environ)
        return any(name in cookies for name in self.staff_cookies)

    def _answer(
        self, entry: _Entry, environ: dict, start_response, counted: bool = False
    ) -> Iterable[bytes]:
        environ[ENDPOINT_KEY] = entry.endpoint
        if entry.view_slug and environ["REQUEST_METHOD"] == "GET" and not counted:
            count_view(self.app, entry.view_slug, environ.get("HTTP_USER_AGENT"))
        if not is_resource_modified(environ, etag=entry.etag, last_modified=entry.last_modified):
            headers = Headers(entry.headers)
            remove_entity_headers(headers)
            start_response("304 NOT MODIFIED", headers.to_wsgi_list())
            return []
        start_response("200 OK", entry.headers)
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [entry.body]

    def _refresh(self, key: tuple[str, str], environ: dict, start_response) -> Iterable[bytes]:
        """A page kept before, whose period ended: rendered again in full
        (without the request's conditions, or a run of conditional GETs
        would never refill the cache), then answered as a hit would be."""
        plain = {k: v for k, v in environ.items() if k not in _CONDITIONS}
        seen: list = []

        def keep(status, headers, exc_info=None):
            seen[:] = [status, headers]
            return lambda data: None  # the body comes back as the result

        result = self.wsgi_app(plain, keep)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        entry = self._keep(key, plain, seen, body)
        if entry is None:  # no longer a public page (an article removed): as the app said
            self.entries.pop(key, None)
            start_response(*seen)
            return [body]
        return self._answer(entry, environ, start_response, counted=True)

    def _keep(self, key: tuple[str, str], environ: dict, seen: list, body: bytes) -> _Entry | None:
        marked = environ.get(ENVIRON_KEY)
        if marked is None or environ["REQUEST_METHOD"] != "GET" or not seen[0].startswith("200 "):
            return None
        expires, view_slug, endpoint = marked
        headers = Headers(seen[1])
        entry = self.entries[key] = _Entry(
            headers=seen[1],
            body=body,
            etag=headers["ETag"],
            last_modified=headers.get("Last-Modified"),
            expires=expires,
            view_slug=view_slug,
            endpoint=endpoint,
        )
        return entry

    def _fill(self, key: tuple[str, str], environ: dict, start_response) -> Iterable[bytes]:
        seen: list = []

        def keep(status, headers, exc_info=None):
            seen[:] = [status, headers]
            return start_response(status, headers, exc_info)

        result = self.wsgi_app(environ, keep)
        if environ.get(ENVIRON_KEY) is None or not seen[0].startswith("200 "):
            return result  # not a public page, or a 304: passed on as it is
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        self._keep(key, environ, seen, body)
        return [body]
