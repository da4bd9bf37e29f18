"""Security headers on every response, error pages included; the signed
session cookie."""

from __future__ import annotations

import hashlib
import json

from flask import Flask, Response
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SecureCookieSessionInterface
from werkzeug.http import dump_cookie

from services import tokens

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)

HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
)
HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


def _adder(headers: tuple[tuple[str, str], ...]):
    names = [name.lower() for name, _ in headers]

    def add(response: Response) -> Response:
        # A view may set its own value of any of these: it wins. One pass
        # over the response's headers instead of a lookup per name.
        h = response.headers
        present = {key.lower() for key, _ in h}
        if present.isdisjoint(names):
            h.extend(headers)
        else:
            h.extend(item for item, name in zip(headers, names, strict=True) if name not in present)
        return response

    return add


class _SessionJSON(TaggedJSONSerializer):
    """Flask's session serializer. A session of plain strings (a visitor's
    CSRF token) needs no tags: written straight, as the same text Flask
    writes (compact, keys sorted, ASCII), and read straight back."""

    def dumps(self, value) -> str:
        if (
            type(value) is dict
            and all(type(k) is str and type(v) is str for k, v in value.items())
            and not (len(value) == 1 and next(iter(value)) in self.tags)
        ):
            return json.dumps(value, separators=(",", ":"), sort_keys=True)
        return super().dumps(value)

    def loads(self, value: str):
        data = json.loads(value)
        if (
            type(data) is dict
            and all(type(v) is str for v in data.values())
            and not (len(data) == 1 and next(iter(data)) in self.tags)
        ):
            return data  # nothing tagged in it: Flask's untagging would return it as it is
        return self._untag_scan(data)


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, the same cookies, signed through
    services.tokens.fast_serializer: a first visit to an article sets the
    cookie (it holds the CSRF token), and Flask's own serializer, made anew
    for each request, cost as much as the rest of the page."""

    digest_method = staticmethod(hashlib.sha1)
    serializer = _SessionJSON()

    def __init__(self) -> None:
        self._templates: dict[tuple, tuple[str, str]] = {}

    def get_signing_serializer(self, app: Flask):
        if not app.secret_key:
            return None
        keys = (*(app.config["SECRET_KEY_FALLBACKS"] or ()), app.secret_key)
        return tokens.fast_serializer(
            keys, self.salt, serializer=self.serializer, key_derivation=self.key_derivation
        )

    def save_session(self, app: Flask, session, response: Response) -> None:
        """Flask's save_session, in fewer steps for the two common cases: a
        session read but left as it came (Flask read seven cookie settings,
        then only added "Vary: Cookie"), and a first visit's new session
        (Flask formatted the cookie's fixed attributes and parsed and wrote
        the Vary header twice, on every article page a new visitor opens)."""
        if not self.should_set_cookie(app, session):
            if session.accessed:
                _vary_cookie(response)
            return
        expires = self.get_expiration_time(app, session)
        if not session or expires is not None:  # emptied, or permanent: as Flask does
            super().save_session(app, session, response)
            return
        value = self.get_signing_serializer(app).dumps(dict(session))
        head, tail = self._cookie_template(app)
        response.headers.add("Set-Cookie", head + value + tail)
        _vary_cookie(response)

    def _cookie_template(self, app: Flask) -> tuple[str, str]:
        """Werkzeug's Set-Cookie value for this app's session cookie, split
        around the value: its attributes depend on settings alone, and a
        signed session never needs quoting (letters, digits, "-_.")."""
        settings = (
            self.get_cookie_name(app),
            self.get_cookie_domain(app),
            self.get_cookie_path(app),
            self.get_cookie_secure(app),
            self.get_cookie_httponly(app),
            self.get_cookie_samesite(app),
            self.get_cookie_partitioned(app),
        )
        found = self._templates.get(settings)
        if found is None:
            name, domain, path, secure, httponly, samesite, partitioned = settings
            cookie = dump_cookie(
                name,
                "v",
                path=path,
                domain=domain,
                secure=secure,
                httponly=httponly,
                samesite=samesite,
                partitioned=partitioned,
            )
            head = f"{name}="
            found = self._templates[settings] = (head, cookie[len(head) + 1 :])
        return found


def _vary_cookie(response: Response) -> None:
    if "Vary" in response.headers:
        response.vary.add("Cookie")
    else:  # the usual case: no parsing of a header that is not there
        response.headers["Vary"] = "Cookie"


def init_app(app: Flask) -> None:
    app.session_interface = SessionInterface()
    https = app.config["SITE_URL"].startswith("https://")
    app.after_request(_adder((*HEADERS, HSTS) if https else HEADERS))
