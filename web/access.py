"""Who may see staff pages: anonymous visitors go to the login page, signed-in
users of the wrong role get 403. Staff pages also take form bodies only,
refuse control characters in their input, and are never kept in a cache."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Flask, Response, abort, current_app, request
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from extensions import login_manager
from models import Role
from web.forms import has_untypable

# The url_prefix of every protected blueprint (protect_blueprint adds it).
_STAFF_PREFIXES: set[str] = set()
# Blueprints of pages about staff accounts that anyone may open (sign-in,
# its code step, password reset, invitations): never cached either.
_STAFF_BLUEPRINTS: set[str] = set()


def mark_staff_blueprint(bp: Blueprint) -> None:
    _STAFF_BLUEPRINTS.add(bp.name)


# The one staff post that takes a file: a CSV of leads to import, as the
# single part "file", up to IMPORT_MAX_BYTES (Werkzeug spools it to disk).
CSV_UPLOAD_ENDPOINTS = frozenset({"lead_import.upload"})


def protect_blueprint(bp: Blueprint, role: Role) -> None:
    """Every view of the blueprint needs the role: none can be forgotten."""

    @bp.before_request
    def _check():
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if not current_user.can(role):
            abort(403)
        # Staff forms are HTML forms. Flask-WTF would hand a JSON body's
        # numbers and lists, or a file, to validators expecting text (a 500).
        if request.is_json or (request.files and not _csv_upload()):
            abort(400)
        # Before any view reads them: PostgreSQL refuses NUL in text (a 500),
        # and no one types control characters into a filter or a form.
        if has_untypable(_names_and_values(request.args, request.form)):
            abort(400)
        return None

    if bp.url_prefix:
        _STAFF_PREFIXES.add(bp.url_prefix)


def raise_upload_limit() -> None:
    """Before anything reads the body (CSRF, the form checks): the CSV upload
    may be larger than MAX_CONTENT_LENGTH, for a signed-in marketer only."""
    if (
        request.endpoint in CSV_UPLOAD_ENDPOINTS
        and request.method == "POST"
        and current_user.is_authenticated
        and current_user.can(Role.MARKETER)
    ):
        request.max_content_length = current_app.config["IMPORT_MAX_BYTES"]


def _csv_upload() -> bool:
    files = list(request.files.items(multi=True))
    return (
        request.endpoint in CSV_UPLOAD_ENDPOINTS
        and len(files) == 1
        and files[0][0] == "file"
        and (files[0][1].filename or "").lower().endswith(".csv")
    )


def _names_and_values(*multidicts: MultiDict) -> Iterator[str]:
    for multidict in multidicts:
        for name, value in multidict.items(multi=True):
            yield name
            yield value


def staff_page() -> bool:
    """The request is for a staff page, or for the sign-in page."""
    path = request.path
    if request.endpoint == login_manager.login_view or request.blueprint in _STAFF_BLUEPRINTS:
        return True
    return any(path == prefix or path.startswith(prefix + "/") for prefix in _STAFF_PREFIXES)


def _no_store(response: Response) -> Response:
    # Staff pages show addresses, IPs and user agents: nothing keeps a copy,
    # not even the browser's back button cache on a shared computer.
    if staff_page():
        response.cache_control.no_store = True
    return response


def init_app(app: Flask) -> None:
    app.after_request(_no_store)
