"""Request latencies by URL rule endpoint, public page cache hits included.

`RequestTimer` wraps the whole WSGI stack; the endpoint that answered is left
in the environ by Flask (a before_request hook) or by the public page cache
(web.public_pages), which answers without Flask. Labels stay bounded: an
endpoint name, or "none" when no rule matched (a 404).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flask import Flask, request
from prometheus_client import Histogram

from services.metrics.instruments import HTTP_LATENCY

ENDPOINT_KEY = "leads.endpoint"
NO_ENDPOINT = "none"


def _note_endpoint() -> None:
    request.environ[ENDPOINT_KEY] = request.endpoint


class RequestTimer:
    def __init__(self, wsgi_app) -> None:
        self.wsgi_app = wsgi_app
        # One histogram child per endpoint, looked up once: the cached
        # article path is the cheapest request there is.
        self.children: dict[str, Histogram] = {}

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        started = time.perf_counter()
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            endpoint = environ.get(ENDPOINT_KEY) or NO_ENDPOINT
            child = self.children.get(endpoint)
            if child is None:
                child = self.children[endpoint] = HTTP_LATENCY.labels(endpoint)
            child.observe(time.perf_counter() - started)


def init_app(app: Flask) -> None:
    """Called before any other before_request hook is added: a request that
    one of those refuses still has its endpoint."""
    app.before_request(_note_endpoint)
