"""Admin: bounce and complaint rates (the deliverability page), and the
warning shown on every admin page when complaints pass 0.1%."""

from __future__ import annotations

from flask import render_template
from flask_login import current_user

from blueprints.admin.base import bp
from services.reporting import deliverability


@bp.context_processor
def _complaint_alert() -> dict:
    # Runs for admin pages only, and for the error page a non-admin gets
    # there: that one must not show it.
    if not (current_user.is_authenticated and current_user.is_admin):
        return {}
    return {"complaint_alert": deliverability.complaint_alert()}


@bp.get("/deliverability")
def deliverability_page():
    days = deliverability.daily()
    return render_template(
        "admin/deliverability.html",
        windows=deliverability.windows(),
        announcements=deliverability.per_announcement(),
        complaint_chart=deliverability.rate_chart(
            days, "complaint", deliverability.COMPLAINT_THRESHOLDS
        ),
        bounce_chart=deliverability.rate_chart(days, "bounce"),
        chart_days=deliverability.CHART_DAYS,
        recommended=deliverability.COMPLAINT_RECOMMENDED,
        limit=deliverability.COMPLAINT_LIMIT,
    )
