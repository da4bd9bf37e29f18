"""Compressed responses: brotli where the client takes it, else gzip
(Flask-Compress, through its settings).

Public pages are compressed once per coding: the page cache in front
(web/public_pages.py) keeps one entry per path and coding, and asks the app
with the Accept-Encoding narrowed to that one coding, so Flask-Compress's
choice and the cache's key are the same thing.
"""

from __future__ import annotations

from flask import Flask
from flask_compress import Compress
from werkzeug.http import parse_accept_header

# In order of preference at equal quality: brotli is about a fifth smaller.
CODINGS = ("br", "gzip")
IDENTITY = "identity"
COMPRESSED_TYPES = (
    "text/html",
    "text/css",
    "text/javascript",
    "application/javascript",
    "text/xml",
    "application/xml",
    "application/atom+xml",
    "application/json",
    "application/problem+json",
    "image/svg+xml",
    "text/plain",
)

compress = Compress()


def coding_for(accept_encoding: str | None) -> str:
    """The one content coding a client with this Accept-Encoding gets."""
    accepted = parse_accept_header(accept_encoding or "")
    best = max(CODINGS, key=accepted.quality)  # the first of equals
    return best if accepted.quality(best) > 0 else IDENTITY


def init_app(app: Flask) -> None:
    """Register before any other after_request hook: Flask runs them in
    reverse, so compression sees the final headers and body."""
    app.config.setdefault("COMPRESS_ALGORITHM", list(CODINGS))
    # Static files are sent as streams (Flask's send_file).
    app.config.setdefault("COMPRESS_ALGORITHM_STREAMING", list(CODINGS))
    app.config.setdefault("COMPRESS_MIMETYPES", list(COMPRESSED_TYPES))
    # The article: 3.7 kB at 5 against 3.9 kB at the default 4, for 0.3 ms
    # more, paid once per page period (bench/RESULTS.md, finding 10).
    app.config.setdefault("COMPRESS_BR_LEVEL", 5)
    compress.init_app(app)
