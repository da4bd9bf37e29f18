"""Pages rendered once with placeholders, filled in on each request.

An article page is the same for every anonymous visitor except for a few
form values (CSRF token, time-trap token, UTM parameters, referrer). Rendering
its two WTForms signup forms cost most of the request; with the page cached
as text parts, a visit costs the tokens and a join.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import current_app, session
from flask_login import current_user

_SPLIT = re.compile(r"(__DYN_[A-Z_]+__)")


def cacheable() -> bool:
    """Anonymous visitors with nothing flashed see the same page; staff (their
    nav) and debug mode (articles reload) render every time."""
    return (
        not current_app.debug and not current_user.is_authenticated and not session.get("_flashes")
    )


def render(key: str, build: Callable[[], str], values: dict[str, str]) -> str:
    cache: dict[str, list[str]] = current_app.extensions.setdefault("page_cache", {})
    parts = cache.get(key)
    if parts is None:
        parts = _SPLIT.split(build())
        cache[key] = parts
    # Odd items are placeholders: parts alternate text, name, text...
    return "".join(part if i % 2 == 0 else values[part] for i, part in enumerate(parts))
