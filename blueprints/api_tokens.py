"""/account/tokens: a staff user's personal API tokens, made (shown once),
listed and revoked. Linked from the account page."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from extensions import db
from models import Role, TokenScope
from services.staff import api_tokens
from web.access import protect_blueprint
from web.forms import no_control_characters

bp = Blueprint("account_tokens", __name__, url_prefix="/account/tokens")
protect_blueprint(bp, Role.MARKETER)  # every staff user (admins pass too)


class TokenForm(FlaskForm):
    name = StringField(
        "Name (what it is for, e.g. CRM sync)",
        validators=[DataRequired(), Length(max=api_tokens.MAX_NAME), no_control_characters],
    )
    scope = SelectField(
        "Access",
        choices=[
            SelectChoice(TokenScope.READ.value, "Read: list and read"),
            SelectChoice(TokenScope.WRITE.value, "Write: read, and change"),
        ],
    )
    submit = SubmitField("Create token")


class RevokeForm(FlaskForm):
    submit = SubmitField("Revoke")


def _page(form: TokenForm, secret: str | None = None, status: int = 200):
    return render_template(
        "account/tokens.html",
        form=form,
        tokens=api_tokens.of_user(current_user),
        secret=secret,
    ), status


@bp.get("")
def tokens():
    return _page(TokenForm(formdata=None))


@bp.post("")
def create():
    form = TokenForm()
    if not form.validate():
        return _page(form, status=400)
    _token, secret = api_tokens.create(current_user, form.name.data, TokenScope(form.scope.data))
    db.session.commit()
    # Shown in this answer only (never in a redirect's URL or the session).
    return _page(TokenForm(formdata=None), secret=secret)


@bp.post("/<public_id>/revoke")
def revoke(public_id: str):
    token = api_tokens.by_public_id(current_user, public_id) or abort(404)
    if not RevokeForm().validate():
        abort(400)
    if api_tokens.revoke(current_user, token):
        flash(f"The token “{token.name}” is revoked: it no longer works.", "info")
    db.session.commit()
    return redirect(url_for(".tokens"), 303)
