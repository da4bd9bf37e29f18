"""The admin blueprint: admins only, template globals, the home page, and
mail HTML shown safely inside the admin. The views are in the modules beside
this one."""

from __future__ import annotations

from flask import Blueprint, Response, render_template
from markupsafe import escape

from models import Role
from services import timezones
from services.campaigns import announcements, classes
from services.delivery import outbox_report
from web.access import protect_blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")
protect_blueprint(bp, Role.ADMIN)
PER_PAGE = 50


@bp.app_template_global("local_time")
def _local_time(moment, zone_name: str):
    return moment.astimezone(timezones.zone(zone_name))


@bp.app_template_global("zone_suggestions")
def _zone_suggestions():
    return timezones.COMMON_ZONES


@bp.get("/", endpoint="index")
def index():
    return render_template(
        "admin/index.html",
        classes=classes.upcoming_classes(limit=5),
        scheduled=announcements.scheduled(),
        report=outbox_report.status_report(5),
    )


def sandboxed_mail(rendered: tuple[str, str, str] | str) -> Response:
    """A mail's HTML part (or the error that stopped it) inside the admin: no
    scripts, no network, its own origin."""
    html = rendered[2] if isinstance(rendered, tuple) else f"<p>{escape(rendered)}</p>"
    resp = Response(html, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = (
        "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    )
    resp.headers["X-Frame-Options"] = "SAMEORIGIN"
    return resp
