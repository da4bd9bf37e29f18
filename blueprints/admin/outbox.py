"""Admin: the outbox (the delivery log: a mail, its retry, what came back)
and the suppression list."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from blueprints.admin.base import PER_PAGE, bp, sandboxed_mail
from blueprints.admin.forms import ActionForm, SuppressForm
from extensions import db
from models import MailKind, OutboxMessage, OutboxStatus, email_hash
from services import paging
from services.bounces import events
from services.delivery import outbox, outbox_report
from services.leads import suppressions
from services.leads.addresses import InvalidAddress, normalise
from services.mail import compose
from services.staff import audit


@bp.get("/outbox")
def outbox_list():
    status = request.args.get("status", "")
    kind = request.args.get("kind", "")
    statuses = [s.value for s in OutboxStatus]
    kinds = [k.value for k in MailKind]
    try:
        before = paging.parse_before(request.args.get("before"))
    except paging.PagingError:
        abort(400)
    page = outbox_report.page(
        OutboxStatus(status) if status in statuses else None,
        MailKind(kind) if kind in kinds else None,
        before=before,
        per_page=PER_PAGE,
    )
    return render_template(
        "admin/outbox.html",
        rows=page.rows,
        status=status,
        kind=kind,
        next_before=page.next_before,
        report=outbox_report.status_report(5),
        statuses=statuses,
        kinds=kinds,
        action=ActionForm(),
    )


def _row_or_404(row_id: int) -> OutboxMessage:
    return outbox_report.by_id(row_id) or abort(404)


@bp.get("/outbox/<int:row_id>")
def outbox_detail(row_id: int):
    row = _row_or_404(row_id)
    return render_template(
        "admin/outbox_row.html",
        row=row,
        rendered=compose.render_stored(row),
        inbound=events.for_mail(row.id),
        action=ActionForm(),
    )


@bp.get("/inbound/<int:event_id>")
def inbound_detail(event_id: int):
    """A bounce or complaint as received: what it said, what was done."""
    return render_template("admin/inbound.html", ev=events.by_id(event_id) or abort(404))


@bp.get("/outbox/<int:row_id>/html")
def outbox_html(row_id: int):
    return sandboxed_mail(compose.render_stored(_row_or_404(row_id)))


@bp.post("/outbox/<int:row_id>/retry")
def outbox_retry(row_id: int):
    if not ActionForm().validate_on_submit():
        abort(400)
    if outbox.retry(row_id):
        audit.record(current_user, "outbox.retry", str(row_id))
        db.session.commit()
        flash("Queued again: the worker will try it now.", "info")
    else:
        flash("Only a failed mail can be retried.", "error")
    return redirect(url_for(".outbox_detail", row_id=row_id), 303)


@bp.route("/suppressions", methods=["GET", "POST"], endpoint="suppressions")
def suppression_list():
    form = SuppressForm()
    if form.validate_on_submit():
        try:
            address = normalise(form.email.data)
        except InvalidAddress as exc:
            form.email.errors.append(str(exc))
        else:
            if suppressions.suppress(address, "manual", f"added by {current_user.email}"):
                audit.record(current_user, "suppression.add", email_hash(address)[:12])
                db.session.commit()
            flash(f"{address} will not be mailed.", "info")
            return redirect(url_for(".suppressions"), 303)
    status = 400 if request.method == "POST" else 200
    return render_template(
        "admin/suppressions.html",
        rows=suppressions.recent(),
        total=suppressions.count(),
        form=form,
    ), status
