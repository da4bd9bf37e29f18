"""Signup, confirmation, preferences and unsubscribe."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from markupsafe import escape

from blueprints.forms import (
    PreferencesForm,
    ResendForm,
    SignupForm,
    csrf_token,
    quick_signup_check,
)
from extensions import csrf, db, limiter
from models import LeadStatus
from services import clock, consent, subscriptions, tokens, topics
from services.addresses import InvalidAddress, normalise

bp = Blueprint("subscriptions", __name__)

UTM_FIELDS = subscriptions.UTM_KEYS


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


def _external_referrer() -> str:
    ref = request.referrer or ""
    parts = urlsplit(ref)
    if parts.scheme not in ("http", "https") or parts.netloc == request.host:
        return ""
    return ref[:500]


def new_signup_form(placement: str, source: str | None = None) -> SignupForm:
    """A blank form for a page, stamped with when it was shown and where the
    visitor came from (UTM parameters of this page view, outside referrer)."""
    form = SignupForm(formdata=None)
    form.placement.data = placement
    form.source.data = source or ""
    # The signed value carries the time to the millisecond: the token's own
    # timestamp has whole seconds only, too coarse for a 2-second trap.
    form.started.data = tokens.make("form-time", [placement, clock.now().timestamp()])
    form.ref.data = _external_referrer()
    for key in UTM_FIELDS:
        getattr(form, key).data = (request.args.get(key) or "")[:200]
    return form


# Placeholders for the values of a signup form that change with each visit:
# a page cached with these in place is filled in per request (see
# blueprints/page_cache.py). Plain capitals: escaping leaves them alone.
def placeholder(name: str) -> str:
    return f"__DYN_{name.upper()}__"


def placeholder_signup_form(placement: str, source: str | None = None) -> SignupForm:
    form = SignupForm(formdata=None)
    form.placement.data = placement
    form.source.data = source or ""
    form.csrf_placeholder = placeholder("csrf_token")
    form.started.data = placeholder(f"started_{placement}")
    form.ref.data = placeholder("ref")
    for key in UTM_FIELDS:
        getattr(form, key).data = placeholder(key)
    return form


_CSRF = placeholder("csrf_token")
_REF = placeholder("ref")
_UTM = tuple((key, placeholder(key)) for key in UTM_FIELDS)
_NO_UTM = {name: "" for _, name in _UTM}


# Pages shown within this many seconds of each other share one form-time
# token: signing one per visit cost a tenth of a page view. The trap then
# reads a form as shown up to this much earlier than it was, i.e. it lets a
# bot through that waited FORM_MIN_SECONDS minus at most this.
FORM_TIME_SHARED_SECONDS = 0.1


def form_time_token() -> str:
    """The signed time stamp of a page's forms, read by the time trap."""
    now = clock.now().timestamp()
    extensions = current_app.extensions
    shared = extensions.get("form_time_token")
    if shared is not None and 0 <= now - shared[0] < FORM_TIME_SHARED_SECONDS:
        return shared[1]
    # One signed token serves every form on the page: the trap reads the time.
    token = tokens.make("form-time", ["page", now])
    extensions["form_time_token"] = (now, token)
    return token


def signup_form_values(placements: tuple[str, ...]) -> dict[str, str]:
    """The per-visit values for placeholder_signup_form, escaped for HTML."""
    started = form_time_token()
    values = {placeholder(f"started_{p}"): started for p in placements}
    values[_CSRF] = csrf_token()
    req = request._get_current_object()
    values[_REF] = str(escape(_external_referrer())) if req.referrer else ""
    if req.args:
        args = req.args
        values.update({name: str(escape((args.get(k) or "")[:200])) for k, name in _UTM})
    else:  # most visits: no campaign parameters to carry
        values.update(_NO_UTM)
    return values


def _clean(value: str | None, limit: int) -> str | None:
    if not value:
        return None
    value = "".join(ch for ch in value if ch.isprintable())[:limit].strip()
    return value or None


def _looks_like_a_bot(nickname: str | None, started: str | None) -> bool:
    if nickname:
        return True
    try:
        value, _ = tokens.read("form-time", started or "")
        shown_at = float(value[1])
    except (tokens.TokenInvalid, TypeError, ValueError, IndexError):
        return True
    age = clock.now().timestamp() - shown_at
    return age < current_app.config["FORM_MIN_SECONDS"]


def render_signup_page(form: SignupForm, status: int = 200, message: str | None = None):
    return render_template("subscriptions/signup.html", form=form, message=message), status


@bp.app_template_global("consent_text_for")
def _consent_text_for(placement: str) -> str:
    return consent.text_for(placement)


@bp.get("/subscribe")
def signup_page():
    return render_signup_page(new_signup_form("page"))


@dataclass
class _SignupPost:
    """What a valid signup post carries, from the form data or the form."""

    email: str  # normalised
    name: str | None
    topics: list[str]
    placement: str
    source: str | None
    started: str | None
    nickname: str | None
    ref: str | None
    utm: dict[str, str | None]


def _post_from(get, getlist, email: str, placement: str) -> _SignupPost:
    return _SignupPost(
        email=email,
        name=get("name"),
        topics=getlist("topics"),
        placement=placement,
        source=get("source"),
        started=get("started"),
        nickname=get("nickname"),
        ref=get("ref"),
        utm={k: get(k) for k in UTM_FIELDS},
    )


def _placement(value: str | None) -> str:
    return value if value in consent.PLACEMENTS else "page"


def _quick_post() -> _SignupPost | None:
    """The post read straight from the form data when it is valid; None
    sends it through the full form (see blueprints.forms.quick_signup_check)."""
    data = request.form
    if not g.get("csrf_valid") or not quick_signup_check(data):
        return None
    try:
        email = normalise(data.get("email"), current_app.config["MAIL_CHECK_DELIVERABILITY"])
    except InvalidAddress:
        return None
    return _post_from(data.get, data.getlist, email, _placement(data.get("placement")))


def _form_post() -> _SignupPost | tuple:
    """The post through SignupForm: the post, or the page with its errors."""
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
    if not valid or email is None:
        return render_signup_page(form, 400)
    fields = form._fields
    return _post_from(
        lambda name: fields[name].data,
        lambda name: fields[name].data,
        email,
        form.placement.data,
    )


@bp.post("/subscribe")
@limiter.limit(lambda: current_app.config["SIGNUP_RATE_LIMIT"])
def subscribe():
    post = _quick_post() or _form_post()
    if isinstance(post, tuple):
        return post
    if _looks_like_a_bot(post.nickname, post.started):
        # Answered like a real signup, so a bot learns nothing to adapt to.
        return redirect(url_for(".thanks"), 303)
    source = post.source if current_app.extensions["articles"].get(post.source or "") else None
    chosen = post.topics
    if post.placement == "training":
        source = "certified-scrum-product-owner-cspo-training"
        # Its consent text promises class dates and nothing else.
        chosen = [topics.CSPO_CLASSES]
    subscriptions.subscribe(
        subscriptions.SignupRequest(
            email=post.email,
            name=_clean(post.name, 100),
            topics=chosen,
            placement=post.placement,
            source_slug=source,
            utm={k: v for k in UTM_FIELDS if (v := _clean(post.utm[k], 200))},
            referrer=_clean(post.ref, 500),
        ),
        evidence(),
    )
    db.session.commit()
    return redirect(url_for(".thanks"), 303)


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


@bp.get("/confirm/<token>")
def confirm(token: str):
    try:
        lead, issued = subscriptions.lead_from_token(
            "confirm", token, current_app.config["CONFIRMATION_MAX_AGE_SECONDS"]
        )
    except tokens.TokenExpired as exc:
        lead = subscriptions.lead_by_public_id(str(exc.value)) if exc.value else None
        if lead is not None and lead.status == LeadStatus.CONFIRMED:
            # Confirmed already: a "new link" would only send a mail that says so.
            return _confirmed_page(lead, already=True)
        return _token_error(410, expired_token=token)
    except tokens.TokenInvalid:
        return _token_error(400)
    if lead is None:
        return _token_error(404)
    result = subscriptions.confirm(lead, issued, evidence())
    db.session.commit()
    if result == subscriptions.ConfirmResult.STALE:
        return render_template("subscriptions/stale.html", form=new_signup_form("page")), 409
    return _confirmed_page(lead, already=result == subscriptions.ConfirmResult.ALREADY)


def _confirmed_page(lead, already: bool):
    return render_template(
        "subscriptions/confirmed.html",
        lead=lead,
        already=already,
        preferences_token=subscriptions.preferences_token(lead),
    )


@bp.post("/confirm/resend")
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
        return redirect(url_for(".confirm", token=form.token.data), 303)
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
