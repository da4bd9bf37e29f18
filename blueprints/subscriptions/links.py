"""The links in mail: confirm, preferences, unsubscribe (RFC 8058), and a
fresh confirmation link for an expired one."""

from __future__ import annotations

from flask import abort, current_app, redirect, render_template, request, url_for

from blueprints.subscriptions.base import bp, evidence
from blueprints.subscriptions.forms import PreferencesForm, ResendForm
from blueprints.subscriptions.signup import new_signup_form
from extensions import csrf, db, limiter
from models import LeadStatus
from services import tokens
from services.leads import subscriptions, topics


def _token_error(status: int = 400, expired_token: str | None = None):
    resend = None
    if expired_token:
        resend = ResendForm(formdata=None)
        resend.token.data = expired_token
    return render_template(
        "subscriptions/bad_link.html",
        expired=bool(expired_token),
        resend=resend,
        form=new_signup_form("page"),
    ), status


def _confirm_link(token: str):
    """The lead a confirmation link names and when the link was made, or the
    page to show instead (expired, broken, or confirmed already)."""
    try:
        lead, issued = subscriptions.lead_from_token(
            "confirm", token, current_app.config["CONFIRMATION_MAX_AGE_SECONDS"]
        )
    except tokens.TokenExpired as exc:
        lead = subscriptions.lead_by_public_id(str(exc.value)) if exc.value else None
        if lead is not None and lead.status == LeadStatus.CONFIRMED:
            # Confirmed already: a "new link" would only send a mail that says so.
            return None, None, _confirmed_page(lead, already=True)
        return None, None, _token_error(410, expired_token=token)
    except tokens.TokenInvalid:
        return None, None, _token_error(400)
    if lead is None:
        return None, None, _token_error(404)
    return lead, issued, None


@bp.get("/confirm/<token>")
def confirm_page(token: str):
    """Changes nothing: mail filters open every link in a mail, and must not
    confirm on the reader's behalf. One button posts to the same URL."""
    lead, issued, shown = _confirm_link(token)
    if shown is not None:
        return shown
    outcome = subscriptions.confirm_outcome(lead, issued)
    if outcome is not None:
        return _confirm_answer(lead, outcome)
    return _private(
        render_template(
            "subscriptions/confirm.html",
            lead=lead,
            topic_labels=[topics.TOPICS[t] for t in topics.clean(list(lead.topic_slugs))],
        )
    )


@bp.post("/confirm/<token>")
@csrf.exempt  # the token in the URL is the capability; a second post does no harm
def confirm(token: str):
    lead, issued, shown = _confirm_link(token)
    if shown is not None:
        return shown
    result = subscriptions.confirm(lead, issued, evidence())
    db.session.commit()
    return _confirm_answer(lead, result)


def _confirm_answer(lead, result: subscriptions.ConfirmResult):
    if result == subscriptions.ConfirmResult.STALE:
        return render_template("subscriptions/stale.html", form=new_signup_form("page")), 409
    return _confirmed_page(lead, already=result == subscriptions.ConfirmResult.ALREADY)


def _private(body: str, status: int = 200):
    # A page naming a lead's address: for this reader's browser only.
    return body, status, {"Cache-Control": "private, no-store"}


def _confirmed_page(lead, already: bool):
    return _private(
        render_template(
            "subscriptions/confirmed.html",
            lead=lead,
            already=already,
            preferences_token=subscriptions.preferences_token(lead),
        )
    )


@bp.post("/confirm/resend")
@csrf.exempt  # the expired link's token it carries is the capability
@limiter.limit(lambda: current_app.config["SIGNUP_RATE_LIMIT"])
def resend_confirmation():
    form = ResendForm()
    if not form.validate():
        abort(400)
    try:
        subscriptions.lead_from_token(
            "confirm", form.token.data, current_app.config["CONFIRMATION_MAX_AGE_SECONDS"]
        )
    except tokens.TokenExpired as exc:
        lead = subscriptions.lead_by_public_id(str(exc.value)) if exc.value else None
    except tokens.TokenInvalid:
        return _token_error(400)
    else:  # still valid: nothing to resend, the link works
        return redirect(url_for(".confirm_page", token=form.token.data), 303)
    if lead is not None:
        subscriptions.resend_confirmation(lead)
        db.session.commit()
    return redirect(url_for(".thanks"), 303)


def _lead_or_error(purpose: str, token: str, gone_status: int = 404):
    try:
        lead, _ = subscriptions.lead_from_token(purpose, token)
    except tokens.TokenInvalid:
        return None, _token_error(400)
    if lead is None:  # a valid link to a lead that was erased
        return None, (render_template("subscriptions/gone.html"), gone_status)
    return lead, None


@bp.route("/preferences/<token>", methods=["GET", "POST"])
def preferences(token: str):
    lead, error = _lead_or_error("preferences", token)
    if error:
        return error
    form = PreferencesForm()
    saved = None
    if form.validate_on_submit():
        wanted = [] if form.unsubscribe_all.data else form.topics.data
        saved = subscriptions.update_topics(lead, wanted, evidence())
        db.session.commit()
    elif request.method == "POST":
        abort(400)
    form.topics.data = (
        [] if lead.status == LeadStatus.UNSUBSCRIBED else topics.clean(list(lead.topic_slugs))
    )
    return render_template("subscriptions/preferences.html", form=form, lead=lead, saved=saved)


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str):
    lead, error = _lead_or_error("unsubscribe", token)
    if error:
        return error
    return render_template("subscriptions/unsubscribe.html", lead=lead, token=token)


@bp.post("/unsubscribe/<token>")
@csrf.exempt  # RFC 8058: mail providers post with no cookie and no CSRF token
def unsubscribe(token: str):
    # An erased lead is as unsubscribed as can be: a one-click client must
    # read success (2xx), not a failure to retry or report.
    lead, error = _lead_or_error("unsubscribe", token, gone_status=200)
    if error:
        return error
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    subscriptions.unsubscribe(lead, "one-click" if one_click else "link", evidence())
    db.session.commit()
    # 200 with a page, never a redirect: one-click clients do not follow them.
    return render_template(
        "subscriptions/unsubscribed.html",
        preferences_token=subscriptions.preferences_token(lead),
    )
