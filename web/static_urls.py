"""Static files under URLs that carry their content's hash.

`url_for('static', filename=...)` adds `?v=<hash>`; a request whose hash is
the file's current one may be kept a year (`immutable`): a new file gets a
new URL. A stale or missing hash still serves the file, with Flask's usual
revalidation, so an old cached page never links to a 404.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from flask import Flask, Response, current_app, request
from werkzeug.security import safe_join

IMMUTABLE = "public, max-age=31536000, immutable"
HASH_ARG = "v"


class StaticHashes:
    """Content hashes of static files, read again when a file's mtime or size changes."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.known: dict[str, tuple[tuple[int, int], str]] = {}

    def of(self, filename: str) -> str | None:
        path = safe_join(self.folder, filename)
        if path is None:
            return None
        try:
            stat = os.stat(path)
        except OSError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        seen = self.known.get(filename)
        if seen and seen[0] == stamp:
            return seen[1]
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
        self.known[filename] = (stamp, digest)
        return digest


def _hashes() -> StaticHashes:
    return current_app.extensions["static_hashes"]


def _add_hash(endpoint: str, values: dict) -> None:
    if endpoint == "static" and HASH_ARG not in values:
        digest = _hashes().of(values.get("filename", ""))
        if digest:
            values[HASH_ARG] = digest


def _cache_forever(response: Response) -> Response:
    if request.endpoint != "static" or response.status_code not in (200, 304):
        return response
    asked = request.args.get(HASH_ARG)
    if asked and asked == _hashes().of((request.view_args or {}).get("filename", "")):
        response.headers["Cache-Control"] = IMMUTABLE
    return response


def init_app(app: Flask) -> None:
    app.extensions["static_hashes"] = StaticHashes(app.static_folder or "static")
    app.url_defaults(_add_hash)
    app.after_request(_cache_forever)
