"""Who may see staff pages: anonymous visitors go to the login page, signed-in
users of the wrong role get 403. Staff pages also refuse control characters
in their input."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, abort, request
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from extensions import login_manager
from models import Role
from web.forms import has_untypable

# The url_prefix of every protected blueprint (protect_blueprint adds it).
_STAFF_PREFIXES: set[str] = set()


def protect_blueprint(bp: Blueprint, role: Role) -> None:
    """Every view of the blueprint needs the role: none can be forgotten."""

    @bp.before_request
    def _check():
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if not current_user.can(role):
            abort(403)
        # Before any view reads them: PostgreSQL refuses NUL in text (a 500),
        # and no one types control characters into a filter or a form.
        if has_untypable(_names_and_values(request.args, request.form)):
            abort(400)
        return None

    if bp.url_prefix:
        _STAFF_PREFIXES.add(bp.url_prefix)


def _names_and_values(*multidicts: MultiDict) -> Iterator[str]:
    for multidict in multidicts:
        for name, value in multidict.items(multi=True):
            yield name
            yield value
