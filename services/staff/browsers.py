"""A short name for a stored User-Agent string ("Chrome on Linux"), for the
account page's list of sessions; ua-parser keeps the rules current."""

from __future__ import annotations

from functools import lru_cache

from ua_parser import parse

UNKNOWN = "unknown browser"


@lru_cache(maxsize=256)
def browser_label(user_agent: str | None) -> str:
    """ "Firefox on Windows", "curl", or "unknown browser" for an empty or
    unrecognised string; the full string stays on the page as its title."""
    if not user_agent or not user_agent.strip():
        return UNKNOWN
    result = parse(user_agent[:1000])
    browser = result.user_agent.family if result.user_agent else None
    system = result.os.family if result.os else None
    if browser in (None, "Other"):
        browser = None
    if system in (None, "Other"):
        system = None
    if browser and system:
        return f"{browser} on {system}"
    return browser or (f"a browser on {system}" if system else UNKNOWN)
