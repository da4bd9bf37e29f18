"""Reminders timed to class dates: N days before each upcoming class (a
setting, e.g. 21 and 7), to leads who want CSPO class announcements, while
seats remain, and not to anyone who already clicked register for it.

Each (class, step) is planned on its own, so one that fails does not hold
back the others: services.delivery.worker commits each, and gives up on one
that fails with an error that is not passing (give_up)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import String, cast, exists, literal
from sqlalchemy.dialects import postgresql, sqlite

from extensions import db
from models import ClassClick, ClassReminderRun, Lead, MailKind, OutboxMessage, OutboxStatus
from services import clock
from services.campaigns import audience, classes
from services.leads import topics
from services.staff import audit


@dataclass(frozen=True)
class Step:
    class_id: int
    class_public_id: str
    days: int

    def __str__(self) -> str:
        return f"class {self.class_public_id} reminder {self.days} days before"


def _insert():
    dialect = db.session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def due_steps(now: datetime | None = None) -> list[Step]:
    """The reminder steps that have come due, for classes with seats left."""
    steps = current_app.config["CLASS_REMINDER_DAYS"]  # whole days, parsed by Config
    return [
        Step(cls.id, cls.public_id, days)
        for cls, days in classes.reminder_due_classes(steps, now or clock.now())
        if classes.seats_remain(cls)
    ]


def _claim(step: Step, now: datetime) -> bool:
    """The run row is the claim: of two workers, one inserts it."""
    return (
        db.session.execute(
            _insert()(ClassReminderRun)
            .values(training_class_id=step.class_id, days_before=step.days, ran_at=now)
            .on_conflict_do_nothing()
            # Without it SQLAlchemy reports -1 for an INSERT on psycopg, and
            # no reminder would ever be queued on PostgreSQL.
            .execution_options(preserve_rowcount=True)
        ).rowcount
        == 1
    )


def plan_step(step: Step) -> int:
    """Fan out one step; rows queued (0 when another worker ran it). The
    caller commits."""
    now = clock.now()
    if not _claim(step, now):
        return 0
    prefix = f"class-reminder:{step.class_id}:{step.days}:"
    recipients = (
        audience.leads(topics.CSPO_CLASSES)
        .where(
            ~exists().where(
                ClassClick.training_class_id == step.class_id, ClassClick.lead_id == Lead.id
            )
        )
        .with_only_columns(
            literal(MailKind.CLASS_REMINDER.value),
            Lead.id,
            literal(step.class_id),
            literal(prefix) + cast(Lead.id, String),
            literal(OutboxStatus.QUEUED.value),
            literal(now, OutboxMessage.send_after.type),
            literal(now, OutboxMessage.created_at.type),
            literal(0),
        )
    )
    n = db.session.execute(
        _insert()(OutboxMessage)
        .from_select(
            [
                "kind",
                "lead_id",
                "training_class_id",
                "dedupe_key",
                "status",
                "send_after",
                "created_at",
                "attempts",
            ],
            recipients,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .execution_options(preserve_rowcount=True)
    ).rowcount
    db.session.execute(
        db.update(ClassReminderRun)
        .where(
            ClassReminderRun.training_class_id == step.class_id,
            ClassReminderRun.days_before == step.days,
        )
        .values(recipients=n)
    )
    return n


def give_up(step: Step, reason: str) -> None:
    """Record the step as run with no mail, and audit why: it is not tried
    on every pass for ever. The caller commits."""
    if _claim(step, clock.now()):
        audit.record(
            None, "class.reminder_failed", step.class_public_id, days=step.days, reason=reason
        )
