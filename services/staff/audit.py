"""The audit log: one row per sensitive act, in the act's own transaction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from extensions import db
from models import Announcement, AuditEvent, Lead, TrainingClass, User
from services import clock, paging


def record(user: User | None, action: str, target: str | None = None, **details) -> None:
    db.session.add(
        AuditEvent(
            at=clock.now(),
            user_id=user.id if user else None,
            actor=user.email if user else "system",
            action=action,
            target=target,
            details={k: v for k, v in details.items() if v not in (None, "", [], {})},
        )
    )


def page(before: int | None, per_page: int) -> paging.Page[AuditEvent]:
    """The log newest first, from below the id `before`."""
    return paging.newest_first(db.select(AuditEvent), AuditEvent.id, before, per_page)


@dataclass(frozen=True)
class Subject:
    """What an entry's target is, for a link: kind ("lead", "class",
    "announcement", "user", "mail"), the key its page is found by (public
    id, user id, row id), and a label (title, subject, address); key None
    when the object is gone (an erased lead)."""

    kind: str
    key: str | None
    label: str


# The action's prefix names what its target is: (the column the target is
# in, the label shown, the key of the object's page).
_KINDS = {
    "lead": (Lead.public_id, Lead.email, Lead.public_id),
    "class": (TrainingClass.public_id, TrainingClass.title, TrainingClass.public_id),
    "announcement": (Announcement.public_id, Announcement.subject, Announcement.public_id),
    "user": (User.email, User.email, User.id),
}


def subjects(events: list[AuditEvent]) -> dict[int, Subject]:
    """The subject of each entry that has one, by entry id: one query per
    kind of object on the page, never one per entry."""
    wanted: dict[str, set[str]] = {}
    for e in events:
        kind = e.action.partition(".")[0]
        if e.target and kind in _KINDS:
            wanted.setdefault(kind, set()).add(e.target)
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for kind, targets in wanted.items():
        target_col, label_col, key_col = _KINDS[kind]
        for target, label, key in db.session.execute(
            select(target_col, label_col, key_col).where(target_col.in_(targets))
        ):
            found[kind, target] = (str(key), label)
    out: dict[int, Subject] = {}
    for e in events:
        kind = e.action.partition(".")[0]
        if kind == "outbox" and e.target and e.target.isdigit():
            out[e.id] = Subject("mail", e.target, f"mail #{e.target}")
        elif (kind, e.target) in found:
            key, label = found[kind, e.target]
            out[e.id] = Subject(kind, key, label)
        elif kind in _KINDS and e.target:
            out[e.id] = Subject(kind, None, "no longer exists")
    return out
