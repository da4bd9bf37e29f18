"""Security headers on every response, error pages included."""

from __future__ import annotations

from flask import Flask, Response

FRAME_ANCESTORS_NONE = "frame-ancestors 'none'"


def csp(frame_ancestors: str = FRAME_ANCESTORS_NONE) -> str:
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "font-src 'self'; connect-src 'self'; form-action 'self'; object-src 'none'; "
        f"base-uri 'none'; {frame_ancestors}"
    )


CSP = csp()

HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    # Same-origin posts carry the page's whole URL: the signup reads its UTM
    # parameters from there (blueprints/subscriptions/signup.py).
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
)
HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


def _adder(headers: tuple[tuple[str, str], ...]):
    def add(response: Response) -> Response:
        h = response.headers
        # A view that sets its own policy (the embeddable form) decides its
        # framing there: X-Frame-Options has no way to allow a list of sites.
        framed = "Content-Security-Policy" in h
        for name, value in headers:
            if name == "X-Frame-Options" and framed:
                continue
            h.setdefault(name, value)
        return response

    return add


def init_app(app: Flask) -> None:
    https = app.config["SITE_URL"].startswith("https://")
    app.after_request(_adder((*HEADERS, HSTS) if https else HEADERS))
