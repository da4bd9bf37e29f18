"""The public signup: the form page, its post, the embeddable form, thanks."""

from __future__ import annotations

from flask import current_app, redirect, render_template, request, url_for

from blueprints.subscriptions.base import bp, evidence
from blueprints.subscriptions.forms import SignupForm
from extensions import csrf, db, limiter
from services.leads import consent, signup, signup_guard, topics
from services.leads.addresses import InvalidAddress, normalise
from web import public_pages, security

UNREADABLE_MESSAGE = "We could not read what was sent. Please fill in the form again."


STALE_MESSAGE = (
    "This page was open for more than a day, so we ask you to send the form "
    "once more. Please check your details below."
)


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
    signup.subscribe(
        signup.SignupRequest(
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
