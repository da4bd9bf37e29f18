"""/account: every staff member's own password, sessions and two-factor
sign-in (and, later, API tokens)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length

from extensions import db
from models import Role
from services.staff import account, sessions, two_factor
from services.staff import auth as staff_auth
from web.access import protect_blueprint
from web.forms import HtmlForm
from web.public_pages import staff_signed_in

bp = Blueprint("account", __name__, url_prefix="/account")
protect_blueprint(bp, Role.MARKETER)  # every staff member: marketers and admins

# The setup secret waits in the session (encrypted) until a code proves it.
SETUP_KEY = "totp_setup"
# What a user who must set up 2FA can still reach.
_OPEN_DURING_SETUP = {"account.two_factor_setup", "auth.logout", "auth.logout_get", "static"}


class PasswordForm(HtmlForm):
    current = PasswordField(
        "Current password",
        validators=[DataRequired(), Length(max=1000)],
        render_kw={"autocomplete": "current-password"},
    )
    new = PasswordField(
        f"New password ({staff_auth.MIN_PASSWORD_LENGTH} characters or more)",
        validators=[DataRequired(), Length(max=1000)],
        render_kw={"autocomplete": "new-password"},
    )
    repeat = PasswordField(
        "New password again",
        validators=[DataRequired(), EqualTo("new", "The two new passwords differ.")],
        render_kw={"autocomplete": "new-password"},
    )
    submit = SubmitField("Change password")


class CodeForm(HtmlForm):
    code = StringField(
        "6-digit code from your app",
        validators=[DataRequired(), Length(max=20)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"},
    )
    submit = SubmitField("Turn on two-factor sign-in")


class ConfirmForm(HtmlForm):
    """A code or the password, before 2FA is turned off or codes renewed."""

    proof = PasswordField(
        "Your password or a current code",
        validators=[DataRequired(), Length(max=1000)],
        render_kw={"autocomplete": "current-password"},
    )
    submit = SubmitField("Confirm")


class ButtonForm(HtmlForm):
    submit = SubmitField("Go")


@bp.before_app_request
def _two_factor_gate():
    """STAFF_REQUIRE_2FA: a user who must have 2FA and has none reaches only
    the setup page (and sign-out) until it is done."""
    if request.endpoint in _OPEN_DURING_SETUP or not staff_signed_in():
        return None
    if two_factor.required_for(current_user) and not current_user.two_factor_enabled:
        return redirect(url_for("account.two_factor_setup"))
    return None


def _page(status: int = 200, **forms):
    forms.setdefault("password_form", PasswordForm())
    forms.setdefault("confirm_form", ConfirmForm())
    return render_template(
        "account/index.html",
        sessions=sessions.open_sessions(current_user),
        this_session=sessions.current_id(current_user),
        codes_left=two_factor.recovery_codes_left(current_user),
        two_factor_required=two_factor.required_for(current_user),
        button=ButtonForm(),
        **forms,
    ), status


@bp.get("/", endpoint="index")
def index():
    return _page()


@bp.post("/password")
def change_password():
    form = PasswordForm()
    if not form.validate_on_submit():
        return _page(400, password_form=form)
    try:
        account.change_password(current_user, form.current.data, form.new.data)
    except account.WrongPassword as exc:
        db.session.rollback()
        form.current.errors.append(str(exc))
        return _page(400, password_form=form)
    except staff_auth.AuthError as exc:  # the strength rule
        db.session.rollback()
        form.new.errors.append(str(exc))
        return _page(400, password_form=form)
    # Every session ended with the old password; this browser gets a new one.
    user = staff_auth.user_by_id(current_user.id)
    session.clear()
    sessions.start(user, request.remote_addr, request.user_agent.string)
    db.session.commit()
    login_user(user)
    flash("Your password is changed. Every other session is signed out.", "info")
    return redirect(url_for(".index"), 303)


@bp.post("/sessions/<int:session_id>/end")
def end_session(session_id: int):
    if not ButtonForm().validate_on_submit():
        abort(400)
    if session_id == sessions.current_id(current_user):
        flash("To end this session, use Sign out.", "info")
    elif account.end_session(current_user, session_id):
        db.session.commit()
        flash("That session is signed out.", "info")
    return redirect(url_for(".index"), 303)


@bp.post("/sessions/end-others")
def end_other_sessions():
    if not ButtonForm().validate_on_submit():
        abort(400)
    ended = account.end_other_sessions(current_user, sessions.current_id(current_user))
    db.session.commit()
    flash(f"Signed out {ended} other session{'s' if ended != 1 else ''}.", "info")
    return redirect(url_for(".index"), 303)


@bp.route("/2fa/setup", methods=["GET", "POST"])
def two_factor_setup():
    if current_user.two_factor_enabled:
        return redirect(url_for(".index"))
    stored = session.get(SETUP_KEY)
    try:
        secret = two_factor.decrypt(stored) if stored else None
    except two_factor.TwoFactorError:
        secret = None
    if secret is None:
        secret = two_factor.new_secret()
        session[SETUP_KEY] = two_factor.encrypt(secret)
    form = CodeForm()
    status = 200
    if form.validate_on_submit():
        try:
            codes = account.enable_two_factor(current_user, secret, form.code.data)
        except two_factor.TwoFactorError as exc:
            form.code.errors.append(str(exc))
            status = 400
        else:
            db.session.commit()
            session.pop(SETUP_KEY, None)
            return render_template("account/recovery_codes.html", codes=codes, first=True)
    elif request.method == "POST":
        status = 400
    uri = two_factor.otpauth_uri(current_user, secret)
    return render_template(
        "account/two_factor_setup.html",
        form=form,
        secret=secret,
        uri=uri,
        qr_svg=two_factor.qr_svg(uri),
        required=two_factor.required_for(current_user),
    ), status


def _confirmed(form: ConfirmForm) -> bool:
    return form.validate_on_submit() and account.proves_identity(current_user, form.proof.data)


@bp.post("/2fa/recovery-codes")
def recovery_codes():
    form = ConfirmForm()
    if not current_user.two_factor_enabled:
        return redirect(url_for(".index"), 303)
    if not _confirmed(form):
        db.session.rollback()
        form.proof.errors.append("That is neither your password nor a current code.")
        return _page(400, confirm_form=form)
    codes = account.regenerate_recovery_codes(current_user)
    db.session.commit()
    return render_template("account/recovery_codes.html", codes=codes, first=False)


@bp.post("/2fa/disable")
def two_factor_disable():
    form = ConfirmForm()
    if not current_user.two_factor_enabled:
        return redirect(url_for(".index"), 303)
    if two_factor.required_for(current_user):
        flash("Two-factor sign-in is required for your account: it cannot be turned off.", "error")
        return redirect(url_for(".index"), 303)
    if not _confirmed(form):
        db.session.rollback()
        form.proof.errors.append("That is neither your password nor a current code.")
        return _page(400, confirm_form=form)
    account.disable_two_factor(current_user)
    db.session.commit()
    flash("Two-factor sign-in is off.", "info")
    return redirect(url_for(".index"), 303)
