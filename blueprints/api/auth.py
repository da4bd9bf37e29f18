"""Who may call the API: a personal token in `Authorization: Bearer ...`,
never a session cookie. Every API blueprint is made by `api_blueprint`, so
none can miss the token check, the per-token rate limit or the JSON rule."""

from __future__ import annotations

import functools

from flask import abort, current_app, g, request
from flask_limiter.util import get_remote_address
from flask_smorest import Blueprint

from extensions import csrf, limiter
from models import ApiToken, Role, TokenScope
from services.staff import api_tokens, audit
from web import problems

BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def current_token() -> ApiToken | None:
    """The request's token, checked once per request (the rate limit's key
    function asks before the views do)."""
    if "api_token" not in g:
        kind, _, secret = request.headers.get("Authorization", "").partition(" ")
        token = None
        if kind.lower() == "bearer" and secret.strip():
            token = api_tokens.authenticate(secret.strip())
        g.api_token = token
    return g.api_token


def rate_key() -> str:
    """Limits count per token; requests without a valid one, per address."""
    token = current_token()
    return f"api-token:{token.id}" if token else f"api-anonymous:{get_remote_address()}"


def _check_request():
    if current_token() is None:
        return problems.problem(401, _why_unauthorized())
    # A body is JSON or nothing: a form post would otherwise be read as no fields.
    has_body = bool(request.content_length) or "chunked" in request.headers.get(
        "Transfer-Encoding", ""
    )
    if request.method in BODY_METHODS and has_body and not request.is_json:
        sent = f" (this one is {request.mimetype})" if request.mimetype else ""
        return problems.problem(415, f"Send the body as application/json{sent}.")
    return None


def _why_unauthorized() -> str:
    if "Authorization" not in request.headers:
        return "Send an API token: Authorization: Bearer <token>. Session cookies are not accepted."
    return "The token is not valid: unknown, revoked, or its user is deactivated."


def _no_store(response):
    # Answers carry addresses and consent evidence: no cache keeps them.
    response.cache_control.no_store = True
    return response


def api_blueprint(name: str, import_name: str, description: str) -> Blueprint:
    """A blueprint of /api/v1 routes guarded by a token.

    Exempt from CSRFProtect: a token in a header, which no other site can
    make a browser send, replaces the session cookie a CSRF token protects.
    Not under web.access.protect_blueprint either (that guard is for HTML
    forms and refuses JSON): `requires` decides roles here."""
    bp = Blueprint(name, import_name, url_prefix="/api/v1", description=description)
    csrf.exempt(bp)
    bp.before_request(_check_request)
    bp.after_request(_no_store)
    # One count per token over every API route (a plain limit counts per route).
    limiter.shared_limit(
        lambda: current_app.config["API_RATE_LIMIT"], scope="api", key_func=rate_key
    )(bp)
    return bp


def requires(scope: TokenScope, role: Role = Role.MARKETER):
    """The view needs a token of this scope whose user has this role."""

    def decorate(view):
        @functools.wraps(view)
        def checked(*args, **kwargs):
            refusal = api_tokens.refusal(current_token(), scope, role)
            if refusal:
                abort(403, refusal)
            return view(*args, **kwargs)

        return checked

    return decorate


def record(action: str, target: str | None, **details) -> None:
    """An audit entry for a change made through the API, by the token's user."""
    token = current_token()
    audit.record(token.user, action, target, via="api", token=token.public_id, **details)
