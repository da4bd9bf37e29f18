"""The host names this site answers for: SITE_URL's, those in the
TRUSTED_HOSTS setting and, for development and tests, loopback.

A request naming any other host (in `Host`, or in `X-Forwarded-Host` behind
a trusted proxy) gets a 400 page. Otherwise Werkzeug would build redirects
from it (`/marketing` -> `http://evil.example/marketing/`), which a shared
cache may keep and hand to everyone.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Flask, render_template, request
from werkzeug.exceptions import SecurityError
from werkzeug.wsgi import get_host

LOOPBACK = ("localhost", "127.0.0.1")
# Set in the WSGI environ of a request for another host (its Host header).
UNTRUSTED_HOST = "leads.untrusted_host"


def trusted_hosts(site_url: str, extra: Iterable[str], local: bool) -> list[str]:
    """SITE_URL's host, then `extra`; loopback too when SITE_URL is on this
    machine or `local` (debug, tests)."""
    site_host = urlsplit(site_url).hostname or ""
    hosts = [site_host, *extra]
    if local or site_host in (*LOOPBACK, "::1"):
        hosts.extend(LOOPBACK)
    return list(dict.fromkeys(hosts))


class HostCheck:
    """WSGI middleware, inside ProxyFix and in front of everything else.

    A request for an untrusted host goes on as a request for SITE_URL's host,
    marked, and `refuse_untrusted_host` answers it. Flask's own check
    (TRUSTED_HOSTS, the same list) would fail it before any URL can be
    built, so that the error page itself, which builds links, would fail.
    """

    def __init__(self, app: Flask) -> None:
        self.wsgi_app = app.wsgi_app
        self.trusted = app.config["TRUSTED_HOSTS"]
        self.site_host = urlsplit(app.config["SITE_URL"]).netloc

    def __call__(self, environ: dict, start_response):
        try:
            get_host(environ, self.trusted)
        except SecurityError:
            environ = {
                **environ,
                "HTTP_HOST": self.site_host,
                UNTRUSTED_HOST: environ.get("HTTP_HOST", ""),
            }
        return self.wsgi_app(environ, start_response)


def refuse_untrusted_host():
    """before_request, first of all: the marked request's 400 page."""
    if UNTRUSTED_HOST not in request.environ:
        return None
    page = render_template(
        "errors/generic.html",
        title="Unknown site",
        detail="This server does not answer for that address. Check the address you typed.",
    )
    return page, 400
