"""Admin: CSPO classes, listed, made, edited and cancelled."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from blueprints.admin.base import bp
from blueprints.admin.forms import ActionForm, ClassForm
from extensions import db
from models import ClassStatus, TrainingClass
from services import clock, timezones
from services.campaigns import classes as classes_service
from services.staff import audit
from web import public_pages


@bp.get("/classes")
def classes():
    return render_template(
        "admin/classes.html", classes=classes_service.recent_classes(), now=clock.now()
    )


def _class_input(form: ClassForm) -> classes_service.ClassInput:
    return classes_service.ClassInput(
        title=form.title.data.strip(),
        course=(form.course.data or "CSPO").strip(),
        start_day=form.start_date.data,
        start_time=form.start_time.data,
        end_day=form.end_date.data,
        end_time=form.end_time.data,
        timezone=form.timezone.data.strip(),
        online=form.online.data,
        location=(form.location.data or "").strip() or None,
        trainer=(form.trainer.data or "").strip() or None,
        price=form.price.data,
        currency=(form.currency.data or "EUR").strip(),
        seats=form.seats.data,
        seats_taken=form.seats_taken.data or 0,
        registration_url=(form.registration_url.data or "").strip() or None,
        status=ClassStatus(form.status.data),
    )


def _save_class(cls: TrainingClass | None, form: ClassForm):
    """Create (cls None) or update a class; a redirect, or None on an error."""
    is_new = cls is None
    try:
        if cls is None:
            cls, notes = classes_service.create(_class_input(form))
        else:
            notes = classes_service.apply(cls, _class_input(form))
    except (classes_service.ClassError, timezones.TimezoneError) as exc:
        form.form_errors.append(str(exc))
        return None
    audit.record(
        current_user,
        "class.create" if is_new else "class.update",
        cls.public_id,
        title=cls.title,
        starts_at=cls.starts_at.isoformat(),
    )
    db.session.commit()
    public_pages.forget()
    for note in notes:
        flash(note, "info")
    flash(f"Saved “{cls.title}”.", "info")
    return redirect(url_for(".classes"), 303)


def _class_form_page(cls: TrainingClass | None, form: ClassForm):
    """Save a valid post (a redirect), or show the form: 400 with its errors."""
    if form.validate_on_submit():
        done = _save_class(cls, form)
        if done:
            return done
    status = 400 if request.method == "POST" else 200
    return render_template("admin/class_form.html", form=form, cls=cls), status


@bp.route("/classes/new", methods=["GET", "POST"])
def class_new():
    return _class_form_page(None, ClassForm())


@bp.route("/classes/<public_id>", methods=["GET", "POST"])
def class_edit(public_id: str):
    cls = classes_service.class_by_public_id(public_id) or abort(404)
    form = ClassForm()
    if request.method == "GET":
        start, end = classes_service.local_times(cls)
        form.process(
            obj=cls,
            start_date=start.date(),
            start_time=start.time(),
            end_date=end.date(),
            end_time=end.time(),
            status=cls.status.value,
        )
    return _class_form_page(cls, form)


@bp.post("/classes/<public_id>/cancel")
def class_cancel(public_id: str):
    cls = classes_service.class_by_public_id(public_id) or abort(404)
    if not ActionForm().validate_on_submit():
        abort(400)
    classes_service.cancel(cls)
    audit.record(current_user, "class.cancel", cls.public_id, title=cls.title)
    db.session.commit()
    public_pages.forget()
    flash(f"“{cls.title}” is cancelled. Reminders for it will not be sent.", "info")
    return redirect(url_for(".classes"), 303)
