"""/api/v1 classes, announcements and the outbox: what admins run."""

from __future__ import annotations

from flask import abort

from blueprints.api import invalid, problems
from blueprints.api.auth import api_blueprint, record, requires
from blueprints.api.schemas import (
    AnnouncementListSchema,
    AnnouncementSchema,
    ClassChangesSchema,
    ClassInputSchema,
    ClassListSchema,
    ClassSchema,
    OutboxStatusSchema,
    ProgressSchema,
)
from extensions import db
from models import Role, TokenScope, TrainingClass
from services import timezones
from services.campaigns import announcement_report, announcements
from services.campaigns import classes as classes_service
from services.delivery import outbox_report
from web import public_pages

bp = api_blueprint(
    "api-campaigns", __name__, "CSPO classes, announcements and the outbox (admins)."
)

LIST_LIMIT = 200


def _class(public_id: str) -> TrainingClass:
    return classes_service.class_by_public_id(public_id) or abort(404, "No class has this id.")


@bp.get("/classes")
@requires(TokenScope.READ)
@bp.response(200, ClassListSchema)
@problems(bp)
def list_classes():
    """Classes, latest start first, past ones included (at most 200)."""
    return {"classes": classes_service.recent_classes(LIST_LIMIT)}


def _input(data: dict) -> classes_service.ClassInput:
    return classes_service.ClassInput(
        title=data["title"].strip(),
        course=(data.get("course") or "CSPO").strip(),
        start_day=data["start_date"],
        start_time=data["start_time"],
        end_day=data["end_date"],
        end_time=data["end_time"],
        timezone=data["timezone"].strip(),
        online=data.get("online", True),
        location=(data.get("location") or "").strip() or None,
        trainer=(data.get("trainer") or "").strip() or None,
        price=data.get("price"),
        currency=(data.get("currency") or "EUR").strip(),
        seats=data.get("seats"),
        seats_taken=data.get("seats_taken") or 0,
        registration_url=(data.get("registration_url") or "").strip() or None,
        status=data["status"],
    )


def _as_input(cls: TrainingClass) -> dict:
    """A stored class as the fields of the form that would save it again."""
    start, end = classes_service.local_times(cls)
    return {
        "title": cls.title,
        "course": cls.course,
        "start_date": start.date(),
        "start_time": start.time(),
        "end_date": end.date(),
        "end_time": end.time(),
        "timezone": cls.timezone,
        "online": cls.online,
        "location": cls.location,
        "trainer": cls.trainer,
        "price": cls.price,
        "currency": cls.currency,
        "seats": cls.seats,
        "seats_taken": cls.seats_taken,
        "registration_url": cls.registration_url,
        "status": cls.status,
    }


def _save(cls: TrainingClass | None, data: dict) -> TrainingClass:
    """Create (cls None) or update through the admin form's service, audited."""
    try:
        if cls is None:
            cls, _notes = classes_service.create(_input(data))
            action = "class.create"
        else:
            classes_service.apply(cls, _input(data))
            action = "class.update"
    except timezones.TimezoneError as exc:
        invalid("timezone", str(exc))
    except classes_service.ClassError as exc:
        invalid("class", str(exc))
    record(action, cls.public_id, title=cls.title, starts_at=cls.starts_at.isoformat())
    db.session.commit()
    public_pages.forget()  # the training page lists classes
    return cls


@bp.post("/classes")
@requires(TokenScope.WRITE, Role.ADMIN)
@bp.arguments(ClassInputSchema)
@bp.response(201, ClassSchema)
@problems(bp, 400, 413, 415, 422)
def create_class(data: dict):
    """Create a class

    Checked as the admin form checks it: times in the class's own time
    zone, dates between 2000-01-01 and 2100-12-31."""
    return _save(None, data)


@bp.patch("/classes/<public_id>")
@requires(TokenScope.WRITE, Role.ADMIN)
@bp.arguments(ClassChangesSchema)
@bp.response(200, ClassSchema)
@problems(bp, 400, 404, 413, 415, 422)
def update_class(data: dict, public_id: str):
    """Change the fields given; the others keep their values."""
    cls = _class(public_id)
    return _save(cls, {**_as_input(cls), **data})


def _announcement(public_id: str):
    return announcements.by_public_id(public_id) or abort(404, "No announcement has this id.")


@bp.get("/announcements")
@requires(TokenScope.READ, Role.ADMIN)
@bp.response(200, AnnouncementListSchema)
@problems(bp)
def list_announcements():
    """Announcements, newest first (at most 200)."""
    return {"announcements": announcements.recent(LIST_LIMIT)}


@bp.get("/announcements/<public_id>")
@requires(TokenScope.READ, Role.ADMIN)
@bp.response(200, AnnouncementSchema)
@problems(bp, 404)
def get_announcement(public_id: str):
    """One announcement and its status."""
    return _announcement(public_id)


@bp.get("/announcements/<public_id>/progress")
@requires(TokenScope.READ, Role.ADMIN)
@bp.response(200, ProgressSchema)
@problems(bp, 404)
def announcement_progress(public_id: str):
    """Its mails by delivery status."""
    return announcement_report.progress(_announcement(public_id).id)


@bp.get("/outbox")
@requires(TokenScope.READ, Role.ADMIN)
@bp.response(200, OutboxStatusSchema)
@problems(bp)
def outbox_status():
    """Mails by status, and how long the oldest mail due has waited."""
    report = outbox_report.status_report(error_limit=0)
    age = report.oldest_due_age
    return {"counts": report.counts, "oldest_due_seconds": age.total_seconds() if age else None}
