"""Pages staff reach from a mail: forgot password, reset password, accept an
invitation. Anyone may open them; the link's token is the capability."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, logout_user
from wtforms import EmailField, PasswordField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length

from extensions import db, limiter
from models import TokenPurpose
from services.staff import auth, links
from web.access import mark_staff_blueprint
from web.forms import HtmlForm

bp = Blueprint("staff_links", __name__)
mark_staff_blueprint(bp)


class ForgotForm(HtmlForm):
    email = EmailField(
        "Your email address",
        validators=[DataRequired(), Length(max=320)],
        render_kw={"autocomplete": "username"},
    )
    submit = SubmitField("Send me a link")


class NewPasswordForm(HtmlForm):
    password = PasswordField(
        f"New password ({auth.MIN_PASSWORD_LENGTH} characters or more)",
        validators=[DataRequired(), Length(max=1000)],
        render_kw={"autocomplete": "new-password"},
    )
    repeat = PasswordField(
        "New password again",
        validators=[DataRequired(), EqualTo("password", "The two passwords differ.")],
        render_kw={"autocomplete": "new-password"},
    )
    submit = SubmitField("Set password")


def _reset_limit() -> str:
    return current_app.config["PASSWORD_RESET_RATE_LIMIT"]


def _address_key() -> str:
    return "reset-address:" + (request.form.get("email") or "").strip().lower()[:320]


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit(_reset_limit, methods=["POST"])
@limiter.limit(_reset_limit, methods=["POST"], key_func=_address_key)
def forgot_password():
    form = ForgotForm()
    if form.validate_on_submit():
        links.request_reset(form.email.data, request.remote_addr)
        db.session.commit()
        # The same page whether or not the address has an account.
        return render_template("staff_links/reset_sent.html", email=form.email.data)
    status = 400 if request.method == "POST" else 200
    return render_template("staff_links/forgot.html", form=form), status


def _link_page(purpose: TokenPurpose, token: str, template: str, done):
    try:
        row = links.find(token, purpose)
    except links.LinkError as exc:
        return render_template("staff_links/link_error.html", reason=str(exc)), 400
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            user = done(token, form.password.data)
        except (auth.AuthError, links.LinkError) as exc:
            db.session.rollback()
            form.password.errors.append(str(exc))
        else:
            db.session.commit()
            if current_user.is_authenticated:
                logout_user()
            flash(f"Your password is set. Sign in as {user.email}.", "info")
            return redirect(url_for("auth.login"), 303)
    status = 400 if request.method == "POST" else 200
    return render_template(
        template, form=form, link=row, min_length=auth.MIN_PASSWORD_LENGTH
    ), status


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    return _link_page(
        TokenPurpose.PASSWORD_RESET, token, "staff_links/reset.html", links.reset_password
    )


@bp.route("/invitation/<token>", methods=["GET", "POST"])
def invitation(token: str):
    return _link_page(
        TokenPurpose.INVITATION, token, "staff_links/invitation.html", links.accept_invitation
    )
