"""Admin: outgoing webhook endpoints (/admin/webhooks) and their delivery
logs. The secret is shown once, on the page that answers its creation or
rotation, and is never shown again; a rotation sent twice rotates once."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from blueprints.admin.base import PER_PAGE, bp
from blueprints.admin.forms import ActionForm, WebhookForm
from extensions import db
from models import WebhookEndpoint
from services import paging
from services.outgoing_webhooks import endpoints
from services.staff import audit


def _endpoint(public_id: str) -> WebhookEndpoint:
    return endpoints.by_public_id(public_id) or abort(404)


def _checked_post() -> None:
    if not ActionForm().validate_on_submit():
        abort(400)


def _show_secret(endpoint: WebhookEndpoint, secret: str, created: bool):
    return render_template(
        "admin/webhook_secret.html", endpoint=endpoint, secret=secret, created=created
    )


@bp.route("/webhooks", methods=["GET", "POST"])
def webhooks():
    form = WebhookForm()
    if form.validate_on_submit():
        try:
            endpoint, secret = endpoints.create(
                form.url.data, form.description.data or "", form.events.data or [], current_user
            )
        except endpoints.EndpointError as exc:
            form.form_errors.extend(exc.problems)
        else:
            audit.record(
                current_user,
                "webhook.create",
                endpoint.url,
                endpoint=endpoint.public_id,
                events=endpoint.event_types,
            )
            db.session.commit()
            return _show_secret(endpoint, secret, created=True)
    status = 400 if request.method == "POST" else 200
    return render_template(
        "admin/webhooks.html", endpoints=endpoints.endpoints(), form=form
    ), status


@bp.get("/webhooks/<public_id>")
def webhook(public_id: str):
    endpoint = _endpoint(public_id)
    try:
        before = paging.parse_before(request.args.get("before"))
    except paging.PagingError:
        abort(400)
    page = endpoints.delivery_log(endpoint, before, PER_PAGE)
    return render_template(
        "admin/webhook.html",
        endpoint=endpoint,
        rows=page.rows,
        next_before=page.next_before,
        form=ActionForm(),
        secret_version=endpoints.secret_version(endpoint),
    )


@bp.post("/webhooks/<public_id>/enabled")
def webhook_enabled(public_id: str):
    endpoint = _endpoint(public_id)
    _checked_post()
    enable = request.form.get("enabled") == "1"
    if endpoints.set_enabled(endpoint, enable):
        audit.record(
            current_user,
            "webhook.enable" if enable else "webhook.disable",
            endpoint.url,
            endpoint=endpoint.public_id,
        )
        db.session.commit()
        flash(f"{'Enabled' if enable else 'Disabled'} {endpoint.url}.", "info")
    return redirect(url_for(".webhook", public_id=public_id), 303)


@bp.post("/webhooks/<public_id>/rotate")
def webhook_rotate(public_id: str):
    endpoint = _endpoint(public_id)
    _checked_post()
    secret = endpoints.rotate(endpoint, request.form.get("secret_version", ""))
    if secret is None:  # a reload of the page that showed it, or a second admin
        flash(
            "The secret had been rotated already: the page that showed the new one "
            "was not shown again. Rotate once more if it was not copied.",
            "warning",
        )
        return redirect(url_for(".webhook", public_id=public_id), 303)
    audit.record(current_user, "webhook.rotate", endpoint.url, endpoint=endpoint.public_id)
    db.session.commit()
    return _show_secret(endpoint, secret, created=False)


@bp.post("/webhooks/<public_id>/test")
def webhook_test(public_id: str):
    endpoint = _endpoint(public_id)
    _checked_post()
    endpoints.send_test(endpoint)
    audit.record(current_user, "webhook.test", endpoint.url, endpoint=endpoint.public_id)
    db.session.commit()
    flash("A test event is queued: the worker sends it within seconds.", "info")
    return redirect(url_for(".webhook", public_id=public_id), 303)


@bp.post("/webhooks/<public_id>/delete")
def webhook_delete(public_id: str):
    endpoint = _endpoint(public_id)
    _checked_post()
    url = endpoint.url
    audit.record(current_user, "webhook.delete", url, endpoint=endpoint.public_id)
    endpoints.remove(endpoint)
    db.session.commit()
    flash(f"Deleted {url} and its delivery log.", "info")
    return redirect(url_for(".webhooks"), 303)
