"""Pages rendered once with placeholders, filled in on each request.

An article page is the same for every anonymous visitor except for a few
form values (CSRF token, time-trap token, UTM parameters, referrer). Rendering
its two WTForms signup forms cost most of the request; with the page cached
as text parts, a visit costs the tokens and a join.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import current_app, request, session
from flask_login import current_user
from flask_login.config import COOKIE_NAME

_SPLIT = re.compile(r"(__DYN_[A-Z_]+__)")


def cacheable() -> bool:
    """Anonymous visitors with nothing flashed see the same page; staff (their
    nav) and debug mode (articles reload) render every time."""
    app = current_app._get_current_object()
    data = session._get_current_object()
    if app.debug or data.get("_flashes"):
        return False
    # Staff sign in through the session only (no request loader), so a
    # visit with neither Flask-Login's session key nor its remember cookie is
    # anonymous: no need to ask Flask-Login, which costs a hash per request.
    remember = app.config.get("REMEMBER_COOKIE_NAME", COOKIE_NAME)
    if "_user_id" not in data and remember not in request.cookies:
        return True
    return not current_user.is_authenticated


class _Page:
    """A page as encoded text parts with a slot for each placeholder: filling
    it in is a list copy and a join (str.format over a 12 kB page cost ten
    times more), and the text is encoded once, not on every visit."""

    def __init__(self, html: str) -> None:
        parts = _SPLIT.split(html)
        # Parts alternate text, placeholder, text...
        self.parts = [p.encode() if i % 2 == 0 else p for i, p in enumerate(parts)]
        self.slots = [(i, parts[i]) for i in range(1, len(parts), 2)]

    def fill(self, values: dict[str, str]) -> bytes:
        out = self.parts.copy()
        for i, name in self.slots:
            out[i] = values[name].encode()
        return b"".join(out)


def render(key: str, build: Callable[[], str], values: dict[str, str]) -> bytes:
    cache: dict[str, _Page] = current_app.extensions.setdefault("page_cache", {})
    page = cache.get(key)
    if page is None:
        page = cache[key] = _Page(build())
    return page.fill(values)
