"""The follow-up sequence: which mails a lead's state changes set in motion.

Each step is an outbox row with a send_after; whether it still goes is
decided at send time (services.delivery.rules.skip_reason), so a reminder to a lead
who confirmed meanwhile is skipped, not sent.
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import Connection

from models import MailKind
from services import clock
from services.delivery import outbox


def confirmation_requested(
    lead_id: int, throttled: str | None = None, conn: Connection | None = None
) -> None:
    """A confirmation now, and one reminder later if the lead is still pending.
    Throttled, the confirmation row is written skipped, with the reason.
    Both rows in one statement (on `conn` when given: see services.upsert)."""
    now = clock.now()
    delay = timedelta(hours=current_app.config["CONFIRM_REMINDER_HOURS"])
    outbox.enqueue_rows(
        [
            outbox.row(MailKind.CONFIRMATION, lead_id, now, skipped=throttled),
            outbox.row(
                MailKind.CONFIRM_REMINDER,
                lead_id,
                now,
                send_after=now + delay,
                dedupe_key=f"confirm-reminder:{lead_id}",
            ),
        ],
        conn=conn,
    )


def lead_confirmed(lead_id: int) -> None:
    """The welcome now; the upcoming-classes mail some days later."""
    now = clock.now()
    outbox.enqueue(MailKind.WELCOME, lead_id)
    days = current_app.config["CLASSES_FOLLOWUP_DAYS"]
    if days >= 0:
        outbox.enqueue(
            MailKind.CLASSES_FOLLOWUP,
            lead_id,
            send_after=now + timedelta(days=days),
            dedupe_key=f"classes-followup:{lead_id}",
        )
