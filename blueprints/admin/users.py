"""Admin: staff users and the audit log."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from blueprints.admin.base import PER_PAGE, bp
from blueprints.admin.forms import InvitationForm, UserCreateForm, UserUpdateForm
from extensions import db
from models import Role
from services import paging
from services.staff import account, audit, auth, links


def _users_page(status: int = 200, **forms):
    forms.setdefault("form", UserCreateForm(formdata=None))
    forms.setdefault("invite_form", InvitationForm(formdata=None))
    return render_template(
        "admin/users.html",
        users=auth.users(),
        invitations=links.pending_invitations(),
        update_form=UserUpdateForm(formdata=None),
        **forms,
    ), status


@bp.route("/users", methods=["GET", "POST"])
def users():
    form = UserCreateForm()
    if form.validate_on_submit():
        try:
            user = auth.create_user(form.email.data, form.password.data, Role(form.role.data))
        except auth.AuthError as exc:
            form.form_errors.append(str(exc))
        else:
            audit.record(current_user, "user.create", user.email, role=user.role.value)
            db.session.commit()
            flash(f"Created {user.role.value} {user.email}.", "info")
            return redirect(url_for(".users"), 303)
    return _users_page(400 if request.method == "POST" else 200, form=form)


@bp.post("/users/invitations")
def invite():
    form = InvitationForm()
    if form.validate_on_submit():
        try:
            row = links.invite(form.email.data, Role(form.role.data), by=current_user)
        except auth.AuthError as exc:
            form.form_errors.append(str(exc))
        else:
            db.session.commit()
            flash(f"Invitation sent to {row.email} ({row.role.value}).", "info")
            return redirect(url_for(".users"), 303)
    return _users_page(400, invite_form=form)


@bp.post("/users/invitations/<int:invitation_id>/revoke")
def revoke_invitation(invitation_id: int):
    # CSRFProtect has checked the form's token before the view runs.
    row = links.revoke_invitation(invitation_id, by=current_user) or abort(404)
    db.session.commit()
    flash(f"The invitation to {row.email} is withdrawn.", "info")
    return redirect(url_for(".users"), 303)


@bp.post("/users/<int:user_id>")
def user_update(user_id: int):
    user = auth.user_by_id(user_id) or abort(404)
    form = UserUpdateForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        changes = auth.update_user(user, Role(form.role.data), form.active.data, by=current_user)
    except auth.AuthError as exc:
        flash(str(exc), "error")
        return redirect(url_for(".users"), 303)
    if changes:
        audit.record(current_user, "user.update", user.email, **changes)
        db.session.commit()
        flash(f"Updated {user.email}.", "info")
    return redirect(url_for(".users"), 303)


@bp.post("/users/<int:user_id>/2fa/reset")
def user_reset_two_factor(user_id: int):
    # CSRFProtect has checked the form's token before the view runs.
    user = auth.user_by_id(user_id) or abort(404)
    try:
        account.reset_two_factor(user, by=current_user)
    except auth.AuthError as exc:
        flash(str(exc), "error")
        return redirect(url_for(".users"), 303)
    db.session.commit()
    flash(
        f"Two-factor sign-in is off for {user.email}, and their sessions are ended. "
        "They sign in with their password and can set it up again.",
        "info",
    )
    return redirect(url_for(".users"), 303)


@bp.get("/audit")
def audit_log():
    try:
        before = paging.parse_before(request.args.get("before"))
    except paging.PagingError:
        abort(400)
    page = audit.page(before, PER_PAGE)
    return render_template(
        "admin/audit.html",
        rows=page.rows,
        subjects=audit.subjects(page.rows),
        details={e.id: audit.details(e) for e in page.rows},
        next_before=page.next_before,
    )
