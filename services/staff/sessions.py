"""Staff sign-in sessions: one row per sign-in, listed on the account page.

The session cookie (Flask-Login's id) is "<user id>:<key>"; the key is 32
random bytes and the row keeps only its SHA-256. Ending the row signs that
browser out; a copied cookie names the same row and stops with it.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from extensions import db
from models import StaffSession, User
from services import clock

log = logging.getLogger("leads.auth")
# last_seen_at moves at most this often: a page view is not a write.
TOUCH_EVERY = timedelta(minutes=5)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def start(user: User, ip: str | None, user_agent: str | None) -> StaffSession:
    """A new session for `user`; user.get_id() then names it."""
    key = secrets.token_urlsafe(32)
    now = clock.now()
    row = StaffSession(
        key_hash=_hash(key),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        ip=(ip or "")[:45] or None,
        user_agent=(user_agent or "")[:300] or None,
    )
    db.session.add(row)
    db.session.flush()
    user.session_key = key
    return row


def load(user_id: str) -> User | None:
    """Flask-Login's loader: the user of an open session named by the id."""
    raw_id, _, key = (user_id or "").partition(":")
    if not raw_id.isdigit() or not key or len(key) > 100:
        return None
    found = db.session.execute(
        db.select(StaffSession, User)
        .join(User, User.id == StaffSession.user_id)
        .where(StaffSession.key_hash == _hash(key), StaffSession.ended_at.is_(None))
    ).first()
    if found is None:
        return None
    row, user = found
    if user.id != int(raw_id) or not user.active:
        return None
    user.session_key = key
    user.staff_session_id = row.id
    _touch(row)
    return user


def _touch(row: StaffSession) -> None:
    now = clock.now()
    if now - row.last_seen_at < TOUCH_EVERY:
        return
    # Its own short transaction: the request's session may hold a view's
    # unfinished work, which this must neither commit nor wait for.
    try:
        with db.engine.begin() as conn:
            conn.execute(
                update(StaffSession).where(StaffSession.id == row.id).values(last_seen_at=now)
            )
    except SQLAlchemyError:
        log.warning("could not record session %s as seen", row.id, exc_info=True)


def current_id(user: User) -> int | None:
    return getattr(user, "staff_session_id", None)


def open_sessions(user: User) -> list[StaffSession]:
    return list(
        db.session.execute(
            db.select(StaffSession)
            .where(StaffSession.user_id == user.id, StaffSession.ended_at.is_(None))
            .order_by(StaffSession.last_seen_at.desc())
        ).scalars()
    )


def end(session_id: int | None) -> None:
    if session_id is not None:
        db.session.execute(
            update(StaffSession)
            .where(StaffSession.id == session_id, StaffSession.ended_at.is_(None))
            .values(ended_at=clock.now())
        )


def end_one(user: User, session_id: int) -> bool:
    """End one of the user's own sessions; False when it is not theirs or
    already ended."""
    result = db.session.execute(
        update(StaffSession)
        .where(
            StaffSession.id == session_id,
            StaffSession.user_id == user.id,
            StaffSession.ended_at.is_(None),
        )
        .values(ended_at=clock.now())
    )
    return result.rowcount == 1


def end_all(user: User, keep: int | None = None) -> int:
    """End every open session of the user (but `keep`); how many ended."""
    stmt = update(StaffSession).where(
        StaffSession.user_id == user.id, StaffSession.ended_at.is_(None)
    )
    if keep is not None:
        stmt = stmt.where(StaffSession.id != keep)
    return db.session.execute(stmt.values(ended_at=clock.now())).rowcount
