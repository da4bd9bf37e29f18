"""Staff sign-in (password, then a 2FA code when the account has 2FA) and
sign-out."""

from __future__ import annotations

import logging

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter import RequestLimit
from flask_login import current_user, login_user, logout_user
from wtforms import EmailField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Length

from extensions import db, limiter
from models import User
from services import clock
from services.staff import audit, auth, devices, sessions, two_factor
from web.access import mark_staff_blueprint
from web.forms import HtmlForm

bp = Blueprint("auth", __name__)
mark_staff_blueprint(bp)
log = logging.getLogger("leads.auth")


class LoginForm(HtmlForm):
    email = EmailField(
        "Email",
        validators=[DataRequired(), Length(max=320)],
        render_kw={"autocomplete": "username"},
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired(), Length(max=1000)],
        render_kw={"autocomplete": "current-password"},
    )
    submit = SubmitField("Sign in")


class CodeForm(HtmlForm):
    code = StringField(
        "Code from your authenticator app, or a recovery code",
        validators=[DataRequired(), Length(max=40)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "text", "spellcheck": "false"},
    )
    submit = SubmitField("Continue")


# The half-signed-in state between the password and the code: in the
# session, for this long.
PENDING_KEY = "pending_2fa"
PENDING_SECONDS = 300


def _email() -> str:
    return (request.form.get("email") or "").strip().lower()[:320]


def _device() -> str | None:
    """This browser's nonce when it signed in to the account before (see
    services.staff.devices); asked once per request by each limit."""
    if "login_device" not in g:
        g.login_device = devices.trusted_device(request.cookies.get(devices.COOKIE_NAME), _email())
    return g.login_device


def _trusted() -> bool:
    return _device() is not None


def _untrusted() -> bool:
    return _device() is None


def _account_key() -> str:
    return "login-account:" + _email()


def _device_key() -> str:
    return "login-device:" + (_device() or "")


def _account_held_back(limit: RequestLimit) -> None:
    # The alert: someone is guessing, or the owner is trying from a new
    # browser during an attack. Their own browsers still get in.
    log.warning(
        "sign-in to %r held back: more than %s attempts from browsers that never signed in to it",
        _email(),
        limit.limit,
    )


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def home_for(user) -> str:
    return url_for("admin.index") if user.is_admin else url_for("marketing.dashboard")


def _pending_key() -> str:
    pending = session.get(PENDING_KEY) or {}
    return f"login-code:{pending.get('user', '')}"


@bp.route("/login", methods=["GET", "POST"])
# Browsers that never signed in to the account: per IP, and per account.
@limiter.limit(_login_limit, methods=["POST"], exempt_when=_trusted)
@limiter.limit(
    _login_limit,
    methods=["POST"],
    key_func=_account_key,
    exempt_when=_trusted,
    on_breach=_account_held_back,
)
# A browser that did (it has the account's device cookie): per browser.
@limiter.limit(_login_limit, methods=["POST"], key_func=_device_key, exempt_when=_untrusted)
def login():
    target = auth.safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(target or home_for(current_user))
    form = LoginForm()
    if form.validate_on_submit():
        user = auth.authenticate(form.email.data, form.password.data)
        if user is not None:
            db.session.commit()
            # A fresh session: nothing from before sign-in carries over.
            session.clear()
            if user.two_factor_enabled:
                session[PENDING_KEY] = {
                    "user": user.id,
                    "at": clock.now().timestamp(),
                    "next": target,
                }
                response = redirect(url_for(".login_code"), 303)
            else:
                response = _signed_in(user, target)
            _remember_device(response, user)
            return response
        db.session.rollback()
        form.password.errors.append("That email and password do not match an active account.")
        return render_template("auth/login.html", form=form), 401
    status = 400 if request.method == "POST" else 200
    return render_template("auth/login.html", form=form), status


def _signed_in(user: User, target: str | None) -> Response:
    """Start the user's session in this browser; where they go next."""
    sessions.start(user, request.remote_addr, request.user_agent.string)
    db.session.commit()
    login_user(user)
    # A user who must have 2FA and has none is sent to set it up
    # (blueprints/account.py keeps them there until done).
    return redirect(target or home_for(user), 303)


def _pending_user() -> User | None:
    pending = session.get(PENDING_KEY)
    if not isinstance(pending, dict):
        return None
    if clock.now().timestamp() - float(pending.get("at", 0)) > PENDING_SECONDS:
        session.pop(PENDING_KEY, None)
        return None
    user = auth.user_by_id(int(pending.get("user", 0)))
    if user is None or not user.active or not user.two_factor_enabled:
        return None
    return user


@bp.route("/login/code", methods=["GET", "POST"])
# Per account being signed in to, and per IP: six digits are guessable
# only at this rate, and the password was already right.
@limiter.limit(_login_limit, methods=["POST"])
@limiter.limit(_login_limit, methods=["POST"], key_func=_pending_key)
def login_code():
    user = _pending_user()
    if user is None:
        flash("Please sign in again: the code step waits five minutes at most.", "info")
        return redirect(url_for(".login"), 303)
    form = CodeForm()
    if form.validate_on_submit():
        code = form.code.data
        if two_factor.verify_code(user, code):
            via = "totp"
        elif two_factor.use_recovery_code(user, code):
            via = "recovery_code"
            audit.record(user, "2fa.recovery_code_used", user.email)
        else:
            db.session.rollback()
            form.code.errors.append("That code is not right, or it was used already.")
            return render_template("auth/login_code.html", form=form), 401
        target = session[PENDING_KEY].get("next")
        session.clear()
        if via == "recovery_code":
            flash(
                f"You signed in with a recovery code: {two_factor.recovery_codes_left(user)} "
                "left. Make new ones on your account page when you run low.",
                "info",
            )
        return _signed_in(user, auth.safe_next(target))
    status = 400 if request.method == "POST" else 200
    return render_template("auth/login_code.html", form=form), status


def _remember_device(response: Response, user) -> None:
    # Sent back to /login only: public pages stay cookie-free and cacheable.
    response.set_cookie(
        devices.COOKIE_NAME,
        devices.issue(user.id),
        max_age=devices.MAX_AGE_SECONDS,
        path=url_for("auth.login"),
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
    )


@bp.get("/logout")
def logout_get():
    # Signing out is a POST, so a link or an <img> elsewhere cannot sign anyone
    # out. Without this rule a GET would fall through to the article route's
    # /<slug> and answer 404; a 405 that names POST says what happened.
    page = render_template(
        "errors/generic.html",
        title="Use the Sign out button",
        detail="Signing out is done with the Sign out button at the top of every staff page.",
    )
    return page, 405, {"Allow": "POST"}


@bp.post("/logout")
def logout():
    if current_user.is_authenticated:
        # The session row ends: a copy of this cookie stops working too.
        sessions.end(sessions.current_id(current_user))
        db.session.commit()
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"), 303)
