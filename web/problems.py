"""RFC 9457 problem details: every error under /api/ is application/problem+json."""

from __future__ import annotations

from flask import current_app, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

PROBLEM_JSON = "application/problem+json"
API_PREFIX = "/api/"

# What each status means to an API client; `type` points at the docs page's entry.
TITLES = {
    400: ("bad-request", "The request could not be read"),
    401: ("unauthorized", "A valid API token is needed"),
    403: ("forbidden", "This token may not do that"),
    404: ("not-found", "No such resource"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("too-large", "The request body is too large"),
    415: ("unsupported-media-type", "Send application/json"),
    422: ("validation", "Some fields are not valid"),
    429: ("rate-limited", "Too many requests"),
    500: ("server-error", "Something went wrong on our side"),
}


def wanted() -> bool:
    """The request is for the API, so its errors are problem details."""
    return request.path.startswith(API_PREFIX)


def problem(
    status: int,
    detail: str | None = None,
    errors: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
):
    slug, title = TITLES.get(status, ("about:blank", None))
    body = {
        "type": f"{current_app.config['SITE_URL']}/api/v1/docs#problem-{slug}"
        if title
        else "about:blank",
        "title": title or HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
        "detail": detail or title or "",
    }
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_JSON
    response.headers.update(headers or {})
    if status == 401:
        # RFC 6750: a missing token gets no error code, a bad one invalid_token.
        sent = request.headers.get("Authorization")
        response.headers["WWW-Authenticate"] = (
            'Bearer realm="api", error="invalid_token"' if sent else 'Bearer realm="api"'
        )
    return response


def from_http_exception(exc: HTTPException):
    """An HTTPException raised anywhere under /api/: by a view, by webargs
    (its field messages are in exc.data), by Werkzeug (413), Flask-Limiter (429)."""
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    errors = field_errors(data.get("messages") or data.get("errors") or {})
    detail = data.get("message") or exc.description
    if status == 400 and "json" in (data.get("messages") or {}):
        detail = "The body is not valid JSON."
    elif status == 422 and errors:
        detail = "Check these fields: " + ", ".join(sorted(errors)) + "."
    elif status == 413:
        detail = f"Send at most {current_app.config['MAX_CONTENT_LENGTH']} bytes."
    elif status == 429:
        detail = f"The limit is {exc.description}; try again later."
    elif status in (404, 405):
        detail = _DETAILS[status]
    headers = {k: v for k, v in exc.get_headers() if k.lower() in ("allow", "retry-after")}
    return problem(status, detail, errors or None, headers)


_DETAILS = {
    404: "Nothing is at this address. The API's routes are listed at /api/v1/docs.",
    405: "This address does not take that method; the Allow header lists the ones it does.",
}


def field_errors(messages, where: str = "") -> dict[str, list[str]]:
    """webargs/marshmallow messages ({"json": {"email": [...]}}, nested for
    lists and objects) flattened to {"email": [...], "topics.0": [...]}."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = str(key)
            if not where and name in ("json", "query", "querystring", "view_args"):
                name = ""  # the location, not a field
            elif name == "_schema":
                name = ""
            path = ".".join(p for p in (where, name) if p)
            for field, texts in field_errors(value, path).items():
                out.setdefault(field, []).extend(texts)
    elif isinstance(messages, list | tuple):
        for item in messages:
            for field, texts in field_errors(item, where).items():
                out.setdefault(field, []).extend(texts)
    else:
        out.setdefault(where or "body", []).append(str(messages))
    return out
