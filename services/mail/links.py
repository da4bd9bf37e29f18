"""Absolute links for mail, built from SITE_URL outside any request."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app


def external_url(endpoint: str, **values) -> str:
    adapter = current_app.extensions.get("external_url_adapter")
    if adapter is None:
        parts = urlsplit(current_app.config["SITE_URL"])
        adapter = current_app.url_map.bind(
            parts.netloc, script_name=parts.path or "/", url_scheme=parts.scheme or "https"
        )
        current_app.extensions["external_url_adapter"] = adapter
    return adapter.build(endpoint, values, force_external=True)
