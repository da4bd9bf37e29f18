"""What guards the public signup, which carries no session and no CSRF token
(so its pages are the same for every visitor and can be cached, and other
sites may embed it): an Origin check, a signed time stamp on the page (the
time trap), plus the honeypot, rate limits and double opt-in elsewhere.

No request objects here: the views pass in the header and field values.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from flask import current_app

from models.lead import UTM_KEYS
from services import clock, tokens
from services.content import TRAINING_PATH

# The page's stamp is rounded down to this many seconds, so a page stays the
# same bytes that long. A post is refused sooner than FORM_MIN_SECONDS after
# the stamp: the stamp is never later than the page view, so people pass.
STAMP_SECONDS = 2
# Older than this, the form is shown again with what was typed (never lost).
STAMP_MAX_AGE_SECONDS = 24 * 3600


class Stamp(enum.StrEnum):
    OK = "ok"
    TOO_SOON = "too soon"  # posted faster than a person fills in a form
    STALE = "stale"  # the page was open for more than a day
    INVALID = "invalid"  # missing or not signed by us


def _stamp_for(seconds: float) -> str:
    return tokens.make("form-time", int(seconds))


def _period() -> int:
    return int(clock.now().timestamp()) // STAMP_SECONDS * STAMP_SECONDS


def stamp_expires() -> float:
    """When the current stamp gives way to the next (clock seconds)."""
    return float(_period() + STAMP_SECONDS)


def stamp() -> str:
    """The signed time stamp for the forms of a page shown now: the same
    token for every page within STAMP_SECONDS (made once per period)."""
    period = _period()
    key = (period, current_app.config["SECRET_KEY"])
    held = current_app.extensions.get("form_stamp")
    if held is None or held[0] != key:
        held = current_app.extensions["form_stamp"] = (key, _stamp_for(period))
    return held[1]


def resume_stamp() -> str:
    """A stamp for a form shown again to someone who has filled it in once:
    dated as if shown FORM_MIN_SECONDS ago, so a quick second click counts."""
    return _stamp_for(clock.now().timestamp() - current_app.config["FORM_MIN_SECONDS"])


def check_stamp(token: str | None) -> Stamp:
    try:
        value, _ = tokens.read("form-time", token or "")
        shown_at = float(value)
    except (tokens.TokenInvalid, TypeError, ValueError):
        return Stamp.INVALID
    age = clock.now().timestamp() - shown_at
    if age < current_app.config["FORM_MIN_SECONDS"]:
        return Stamp.TOO_SOON
    if age > STAMP_MAX_AGE_SECONDS:
        return Stamp.STALE
    return Stamp.OK


# --- Origin check


def origin_of(url: str | None) -> str | None:
    """scheme://host[:port] of a URL, lower case, default ports left out;
    None for anything that is not an http(s) URL."""
    try:
        parts = urlsplit((url or "").strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def allowed_origins() -> frozenset[str]:
    cfg = current_app.config
    return frozenset({origin_of(cfg["SITE_URL"]), *cfg["EMBED_ALLOWED_ORIGINS"]})


def origin_allowed(origin: str | None, referer: str | None) -> bool:
    """Browsers say where a post comes from in Origin (or, failing that,
    Referer). A post that names neither comes from no browser page, and goes
    on to the traps; one that names another site is refused."""
    claimed = origin if origin is not None else referer
    if not claimed:
        return True
    return origin_of(claimed) in allowed_origins()


# --- Where the visitor came from


def utm_from_url(url: str | None) -> dict[str, str]:
    """The UTM parameters in a URL's query: the page a same-origin post came
    from is its Referer, whole (Referrer-Policy strict-origin-when-cross-origin)."""
    try:
        query = parse_qs(urlsplit(url or "").query)
    except ValueError:
        return {}
    return {k: query[k][0] for k in UTM_KEYS if query.get(k) and query[k][0]}


def outside_referrer(url: str | None) -> str | None:
    """An http(s) page on another site, or None (our own pages say nothing)."""
    origin = origin_of(url)
    if origin is None or origin == origin_of(current_app.config["SITE_URL"]):
        return None
    return url


# --- What a signup records of where it came from

TRAINING_SLUG = TRAINING_PATH.lstrip("/")
# A source label a marketer puts in the embed snippet (?source=partner-blog).
_SOURCE_LABEL = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def clean(value: str | None, limit: int) -> str | None:
    """Visitor text made fit to keep: printable, trimmed, at most `limit`."""
    if not value:
        return None
    value = "".join(ch for ch in value if ch.isprintable())[:limit].strip()
    return value or None


@dataclass
class Attribution:
    source_slug: str | None = None
    utm: dict[str, str] = field(default_factory=dict)
    referrer: str | None = None


def attribution(
    placement: str,
    source: str | None,
    ref: str | None,
    utm_fields: dict[str, str | None],
    referer: str | None,
) -> Attribution:
    """The lead's source, UTM values and outside referrer, from the form's
    hidden fields (`ref` and the UTM fields are filled by static/js/signup.js)
    and, for the UTM values, the page the post came from (its Referer)."""
    from_page = utm_from_url(referer)
    utm = {k: v for k in UTM_KEYS if (v := clean(utm_fields.get(k) or from_page.get(k), 200))}
    if placement == "training":
        slug = TRAINING_SLUG
    elif placement == "embed":
        # The marketer's label from the snippet, else the embedding site.
        slug = source if _SOURCE_LABEL.fullmatch(source or "") else urlsplit(ref or "").hostname
    else:
        slug = source if current_app.extensions["articles"].get(source or "") else None
    return Attribution(clean(slug, 200), utm, clean(outside_referrer(ref), 500))
