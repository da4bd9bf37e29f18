"""What the admin (and the API) read about announcements: their progress,
the skipped mail by reason, and each subject as a sample lead would see it."""

from __future__ import annotations

from sqlalchemy import func, select

from extensions import db
from models import Announcement, OutboxMessage, OutboxStatus
from services.campaigns.announcements import sample_context
from services.mail import templating


def progress(ann_id: int) -> dict[str, int]:
    """Its mail to leads (test sends left out) counted by status, with total and done."""
    counts = dict.fromkeys(
        ("queued", "sending", "sent", "failed", "skipped", "cancelled", "held"), 0
    )
    for status, n in db.session.execute(
        select(OutboxMessage.status, func.count())
        .where(OutboxMessage.announcement_id == ann_id, OutboxMessage.lead_id.is_not(None))
        .group_by(OutboxMessage.status)
    ):
        counts[OutboxStatus(status).value] = n
    counts["total"] = sum(counts.values())
    counts["done"] = counts["sent"] + counts["failed"] + counts["skipped"] + counts["cancelled"]
    return counts


def skips_by_reason(ann_id: int) -> list[tuple[str, int]]:
    """(reason, count) of its skipped mail, most first: one grouped query
    over the (announcement_id, status) index, however many recipients."""
    return [
        (reason or "no reason recorded", n)
        for reason, n in db.session.execute(
            select(OutboxMessage.last_error, func.count())
            .where(
                OutboxMessage.announcement_id == ann_id,
                OutboxMessage.lead_id.is_not(None),
                OutboxMessage.status == OutboxStatus.SKIPPED,
            )
            .group_by(OutboxMessage.last_error)
            .order_by(func.count().desc(), OutboxMessage.last_error)
        )
    ]


def sample_subject(ann: Announcement) -> str | None:
    """The subject rendered for the preview's made-up lead, through the same
    sandbox and bounds as the mail; None when it does not render (the page
    shows why elsewhere)."""
    try:
        return templating.render_subject(ann.subject, sample_context(ann.training_class))
    except templating.MergeTagError:
        return None


def sample_subjects(anns: list[Announcement]) -> dict[int, str | None]:
    return {ann.id: sample_subject(ann) for ann in anns}
