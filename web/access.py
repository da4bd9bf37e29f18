"""Who may see staff pages: anonymous visitors go to the login page, signed-in
users of the wrong role get 403."""

from __future__ import annotations

from flask import abort
from flask_login import current_user

from extensions import login_manager
from models import Role


def protect_blueprint(bp, role: Role) -> None:
    """Every view of the blueprint needs the role: none can be forgotten."""

    @bp.before_request
    def _check():
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if not current_user.can(role):
            abort(403)
        return None
