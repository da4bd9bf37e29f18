"""Admin: staff users and the audit log."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from blueprints.admin.base import PER_PAGE, bp
from blueprints.admin.forms import UserCreateForm, UserUpdateForm
from extensions import db
from models import Role
from services import paging
from services.staff import audit, auth


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
    status = 400 if request.method == "POST" else 200
    return render_template(
        "admin/users.html", users=auth.users(), form=form, update_form=UserUpdateForm()
    ), status


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
        next_before=page.next_before,
    )
