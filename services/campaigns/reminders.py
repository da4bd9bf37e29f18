"""Reminders timed to class dates: N days before each upcoming class (a
setting, e.g. 21 and 7), to leads who want CSPO class announcements, while
seats remain, and not to anyone who already clicked register for it."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import String, cast, exists, literal
from sqlalchemy.dialects import postgresql, sqlite

from extensions import db
from models import ClassClick, ClassReminderRun, Lead, MailKind, OutboxMessage, OutboxStatus
from services import clock
from services.campaigns import announcements, classes
from services.leads import topics


def _insert():
    dialect = db.session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def plan() -> int:
    """Fan out every reminder step that has come due. Returns rows queued.
    The caller commits."""
    now = clock.now()
    insert = _insert()
    queued = 0
    steps = current_app.config["CLASS_REMINDER_DAYS"]  # whole days, parsed by Config
    for cls, days in classes.reminder_due_classes(steps, now):
        if not classes.seats_remain(cls):
            continue
        claimed = db.session.execute(
            insert(ClassReminderRun)
            .values(training_class_id=cls.id, days_before=days, ran_at=now)
            .on_conflict_do_nothing()
            # Without it SQLAlchemy reports -1 for an INSERT on psycopg, and
            # no reminder would ever be queued on PostgreSQL.
            .execution_options(preserve_rowcount=True)
        ).rowcount
        if claimed != 1:
            continue  # another worker ran this step
        prefix = f"class-reminder:{cls.id}:{days}:"
        recipients = (
            announcements.audience(topics.CSPO_CLASSES)
            .where(
                ~exists().where(
                    ClassClick.training_class_id == cls.id, ClassClick.lead_id == Lead.id
                )
            )
            .with_only_columns(
                literal(MailKind.CLASS_REMINDER.value),
                Lead.id,
                literal(cls.id),
                literal(prefix) + cast(Lead.id, String),
                literal(OutboxStatus.QUEUED.value),
                literal(now, OutboxMessage.send_after.type),
                literal(now, OutboxMessage.created_at.type),
                literal(0),
            )
        )
        n = db.session.execute(
            insert(OutboxMessage)
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
                ClassReminderRun.training_class_id == cls.id, ClassReminderRun.days_before == days
            )
            .values(recipients=n)
        )
        queued += n
    return queued
