"""Marketer workspace: dashboard, lead browser, lead page, export."""

from __future__ import annotations

import json

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user

from extensions import db
from models import Lead, Role
from services import clock
from services.imports import report as import_report
from services.leads import privacy, subscriptions, topics
from services.reporting import dashboard, export, lead_query
from services.reporting.lead_query import FilterError, LeadFilters
from services.staff import audit
from web.access import protect_blueprint

bp = Blueprint("marketing", __name__, url_prefix="/marketing")
protect_blueprint(bp, Role.MARKETER)


@bp.get("/", endpoint="dashboard")
def dashboard_page():
    days = 90 if request.args.get("days") == "90" else 30
    series = dashboard.signups_per_day(days)
    return render_template(
        "marketing/dashboard.html",
        days=days,
        chart=dashboard.bar_chart(series),
        by_article=dashboard.funnel_by_article(),
        by_placement=dashboard.funnel_by_placement(),
        utm_sources=dashboard.top_utm_sources(),
    )


@bp.get("/embed")
def embed_snippet():
    """The iframe snippet a marketer pastes into another site."""
    return render_template(
        "marketing/embed.html",
        origins=current_app.config["EMBED_ALLOWED_ORIGINS"],
        topics=topics.TOPICS,
        embed_url=current_app.config["SITE_URL"] + url_for("subscriptions.embed_signup"),
    )


def _filters_or_error():
    try:
        return LeadFilters.parse(request.args), None
    except FilterError as exc:
        return LeadFilters(), str(exc)


def _leads_page(filters: LeadFilters, page, error: str | None):
    return render_template(
        "marketing/leads.html",
        filters=filters,
        page=page,
        error=error,
        topics=topics.TOPICS,
        articles=current_app.extensions["articles"].all(),
        import_sources=import_report.source_labels(),
    ), (400 if error else 200)


@bp.get("/leads")
def leads():
    filters, error = _filters_or_error()
    page = None
    if error is None:
        try:
            page = lead_query.page(filters, request.args.get("after"))
        except FilterError as exc:
            error = str(exc)
    return _leads_page(filters, page, error)


@bp.get("/leads.csv")
def leads_csv():
    filters, error = _filters_or_error()
    if error:
        # The browser's page with the message and the filter form, rather
        # than a generic 400 that does not say which filter is wrong.
        return _leads_page(filters, None, error)
    excel = request.args.get("excel") == "1"
    user_id = current_user.id
    counter = [0]

    def generate():
        completed = False
        try:
            yield from export.iter_csv(filters, excel=excel, counter=counter)
            completed = True
        finally:
            db.session.rollback()  # end the read before writing the audit row
            export.record_export(user_id, filters, counter[0], completed, excel=excel)
            db.session.commit()

    filename = export.filename(clock.now().date())
    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _lead_or_404(public_id: str) -> Lead:
    return subscriptions.lead_by_public_id(public_id) or abort(404)


@bp.get("/leads/<public_id>")
def lead_detail(public_id: str):
    lead = _lead_or_404(public_id)
    mails = privacy.mails_to(lead)
    timeline = privacy.timeline(lead, mails)
    return render_template("marketing/lead.html", lead=lead, mails=mails, timeline=timeline)


@bp.get("/leads/<public_id>/data.json")
def lead_data(public_id: str):
    lead = _lead_or_404(public_id)
    data = privacy.lead_data(lead)
    audit.record(current_user, "lead.data_export", lead.public_id)
    db.session.commit()
    return Response(
        json.dumps(data, indent=2, ensure_ascii=False),
        mimetype="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="lead-{public_id}.json"',
            "Cache-Control": "no-store",
        },
    )


@bp.post("/leads/<public_id>/erase")
def lead_erase(public_id: str):
    lead = _lead_or_404(public_id)
    typed = (request.form.get("confirm_email") or "").strip().lower()
    if typed != lead.email:
        flash("Type the lead's email address exactly to confirm the erasure.", "error")
        return redirect(url_for(".lead_detail", public_id=public_id), 303)
    privacy.erase(lead)
    audit.record(current_user, "lead.erase", public_id)
    db.session.commit()
    flash("The lead was erased. Its address is on the suppression list.", "info")
    return redirect(url_for(".leads"), 303)
