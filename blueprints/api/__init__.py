"""The JSON API under /api/v1 (flask-smorest): its OpenAPI document is made
from the views' marshmallow schemas, so it cannot drift from the code."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api, abort

from blueprints.api.schemas import ProblemSchema
from web.problems import PROBLEM_JSON


class LeadsApi(Api):
    # Errors are problem details (web.problems), documented per operation
    # with their own media type by `problems` below, not as smorest's JSON.
    ERROR_SCHEMA = ProblemSchema
    DEFAULT_ERROR_RESPONSE_NAME = None


# Every operation can answer these.
ALWAYS = (401, 403, 429)


def problems(bp, *statuses: int):
    """Document the problem responses of a view (with ALWAYS)."""

    def decorate(view):
        for status in sorted({*ALWAYS, *statuses}, reverse=True):
            view = bp.alt_response(status, schema=ProblemSchema, content_type=PROBLEM_JSON)(view)
        return view

    return decorate


def invalid(field: str, message: str):
    """A 422 naming the field, for what a service refuses after parsing."""
    abort(422, errors={field: [message]})


def init_app(app: Flask) -> None:
    """Before web.errors: smorest registers an app-wide HTTPException handler,
    and the site's own (which answers /api/ with problem details) must win."""
    app.config.update(
        API_TITLE=f"{app.config['SITE_NAME']} leads API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "servers": [{"url": app.config["SITE_URL"]}],
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearerAuth": []}],
        },
    )
    # One Api per app: it holds the app's OpenAPI document.
    api = app.extensions["leads_api"] = LeadsApi(app)
    from blueprints.api import campaigns, docs, leads

    api.register_blueprint(leads.bp)
    api.register_blueprint(campaigns.bp)
    app.register_blueprint(docs.bp)
