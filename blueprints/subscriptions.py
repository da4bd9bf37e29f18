"""Signup, confirmation, preferences and unsubscribe."""

from __future__ import annotations

import ipaddress

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)

from blueprints import public_pages, security
from blueprints.forms import PreferencesForm, ResendForm, SignupForm
from extensions import csrf, db, limiter
from models import LeadStatus
from services import consent, signup_guard, subscriptions, tokens, topics
from services.addresses import InvalidAddress, normalise

bp = Blueprint("subscriptions", __name__)

UNREADABLE_MESSAGE = "We could not read what was sent. Please fill in the form again."
STALE_MESSAGE = (
    "This page was open for more than a day, so we ask you to send the form "
    "once more. Please check your details below."
)


def _client_ip() -> str | None:
    # With TRUSTED_PROXY_COUNT set, the address comes from X-Forwarded-For:
    # text a client may have written. Only a real address is kept as evidence.
    try:
        return str(ipaddress.ip_address((request.remote_addr or "").split("%")[0]))
    except ValueError:
        return None


def evidence() -> subscriptions.Evidence:
    # Servers other than gunicorn let NUL and other control characters through
    # in headers; PostgreSQL refuses NUL in text (a 500, and a lost signup).
    agent = request.headers.get("User-Agent", "")
    if not agent.isprintable():  # nearly always is: no need to look at each character
        agent = "".join(ch for ch in agent if ch.isprintable())
    return subscriptions.Evidence(ip=_client_ip(), user_agent=agent[:500] or None)


def new_signup_form(placement: str, source: str | None = None) -> SignupForm:
    """A blank form for a page: the same for every visitor. It carries the
    page's time stamp; the visitor's UTM values and outside referrer are
    read at post time (see subscribe)."""
    form = SignupForm(formdata=None)
    form.placement.data = placement
    form.source.data = source or ""
    form.started.data = signup_guard.stamp()
    return form


def render_signup_page(form: SignupForm, status: int = 200, message: str | None = None):
    return render_template("subscriptions/signup.html", form=form, message=message), status


@bp.app_template_global("consent_text_for")
def _consent_text_for(placement: str) -> str:
    return consent.text_for(placement)


@bp.get("/subscribe")
def signup_page():
    return public_pages.serve(
        "subscriptions/signup.html",
        lambda: {"form": new_signup_form("page"), "message": None},
    )


def _placement(value: str | None) -> str:
    return value if value in consent.PLACEMENTS else "page"


def _cross_site_refusal():
    return render_template(
        "errors/generic.html",
        title="This form was sent from another site",
        detail=(
            "Our signup form only accepts posts from our own pages and the sites "
            "we have allowed to embed it. Nothing was saved. Please sign up on "
            f"{current_app.config['SITE_URL']}/subscribe instead."
        ),
    ), 403


@bp.post("/subscribe")
@csrf.exempt  # no session, no CSRF token: guarded by the Origin check and traps
@limiter.limit(lambda: current_app.config["SIGNUP_RATE_LIMIT"])
def subscribe():
    if not signup_guard.origin_allowed(request.headers.get("Origin"), request.referrer):
        return _cross_site_refusal()
    form = SignupForm()
    form.placement.data = _placement(form.placement.data)
    valid = form.validate()
    email = None
    if not form.email.errors:
        # Checked even when another field failed, so every error shows at once.
        try:
            email = normalise(form.email.data, current_app.config["MAIL_CHECK_DELIVERABILITY"])
        except InvalidAddress as exc:
            form.email.errors = [*form.email.errors, str(exc)]
    stamp = signup_guard.check_stamp(form.started.data)
    if not valid or email is None:
        if stamp is not signup_guard.Stamp.OK:
            form.started.data = signup_guard.stamp()
        # Werkzeug drops a body it cannot decode (bytes that are not UTF-8).
        unread = bool(request.content_length) and not request.form
        return _form_again(form, message=UNREADABLE_MESSAGE if unread else None)
    if form.nickname.data or stamp in (signup_guard.Stamp.INVALID, signup_guard.Stamp.TOO_SOON):
        # Answered like a real signup, so a bot learns nothing to adapt to.
        return _thanks(form)
    if stamp is signup_guard.Stamp.STALE:
        form.started.data = signup_guard.resume_stamp()
        return _form_again(form, message=STALE_MESSAGE)

    came_from = signup_guard.attribution(
        form.placement.data,
        form.source.data,
        form.ref.data,
        {k: getattr(form, k).data for k in signup_guard.UTM_KEYS},
        request.referrer,
    )
    training = form.placement.data == "training"
    subscriptions.subscribe(
        subscriptions.SignupRequest(
            email=email,
            name=signup_guard.clean(form.name.data, 100),
            # The training form's consent text promises class dates, nothing else.
            topics=[topics.CSPO_CLASSES] if training else form.topics.data,
            placement=form.placement.data,
            source_slug=came_from.source_slug,
            utm=came_from.utm,
            referrer=came_from.referrer,
        ),
        evidence(),
    )
    db.session.commit()
    return _thanks(form)


def _form_again(form: SignupForm, message: str | None = None):
    if form.placement.data == "embed":
        return _framed(render_template("subscriptions/embed.html", form=form, message=message), 400)
    return render_signup_page(form, 400, message=message)


def _thanks(form: SignupForm):
    if form.placement.data == "embed":  # inside the frame: no redirect to a page it may not show
        return _framed(render_template("subscriptions/embed_thanks.html"))
    return redirect(url_for(".thanks"), 303)


def _framed(body: str, status: int = 200):
    """A response the sites in EMBED_ALLOWED_ORIGINS may show in a frame:
    frame-ancestors names them on this route only."""
    ancestors = " ".join(["'self'", *current_app.config["EMBED_ALLOWED_ORIGINS"]])
    return (
        body,
        status,
        {
            "Content-Security-Policy": security.csp(f"frame-ancestors {ancestors}"),
            "Cache-Control": "private, no-store",
        },
    )


@bp.get("/embed/signup")
def embed_signup():
    """The signup form made to sit in an iframe on an allowed site.
    ?topics=a,b ticks those topics; ?source=label names the lead's source."""
    form = new_signup_form("embed", request.args.get("source", "")[:64])
    wanted = request.args.get("topics", "").split(",") + request.args.getlist("topic")
    form.topics.data = topics.clean(wanted)
    # Without JavaScript, the embedding page is known from this request only.
    if signup_guard.origin_of(request.referrer) in current_app.config["EMBED_ALLOWED_ORIGINS"]:
        form.ref.data = request.referrer[:500]
    return _framed(render_template("subscriptions/embed.html", form=form, message=None))


@bp.get("/subscribe/thanks")
def thanks():
    return render_template("subscriptions/thanks.html")


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
