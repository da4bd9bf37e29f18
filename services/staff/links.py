"""Links sent to staff by mail: invitations and password resets.

Each link works once, until it expires. The token in the link is
HMAC-SHA256(SECRET_KEY, nonce): the worker recomputes it from the row when
it writes the mail, and the database keeps only the nonce and the token's
SHA-256, so a copy of the database opens nothing. (Rotating SECRET_KEY
between the request and the mail's sending spoils that one link: ask again.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import update

from extensions import db
from models import MailKind, OutboxMessage, Role, StaffToken, TokenPurpose, User
from services import clock
from services.staff import audit, auth

RESET_LIFETIME = timedelta(hours=1)
MAIL_KIND = {
    TokenPurpose.INVITATION: MailKind.STAFF_INVITATION,
    TokenPurpose.PASSWORD_RESET: MailKind.PASSWORD_RESET,
}


class LinkError(ValueError):
    """A link that does not work (any more); the message says why."""


def token_for(row: StaffToken) -> str:
    key = current_app.config["SECRET_KEY"]
    key = key.encode() if isinstance(key, str) else key
    digest = hmac.new(key, b"leads.staff-link:" + row.nonce.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(
    purpose: TokenPurpose,
    email: str,
    lifetime: timedelta,
    *,
    role: Role | None = None,
    user: User | None = None,
    by: User | None = None,
) -> StaffToken:
    """A link row and the mail that carries it, in the caller's transaction.
    Earlier open links of the same purpose for the address stop working."""
    now = clock.now()
    db.session.execute(
        update(StaffToken)
        .where(
            StaffToken.purpose == purpose,
            StaffToken.email == email,
            StaffToken.used_at.is_(None),
            StaffToken.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    row = StaffToken(
        purpose=purpose,
        nonce=secrets.token_urlsafe(32),
        email=email,
        role=role,
        user_id=user.id if user else None,
        created_by_id=by.id if by else None,
        created_at=now,
        expires_at=now + lifetime,
    )
    row.token_hash = _hash(token_for(row))
    db.session.add(row)
    db.session.flush()
    db.session.add(
        OutboxMessage(
            kind=MAIL_KIND[purpose],
            to_email=email,
            staff_token_id=row.id,
            send_after=now,
            created_at=now,
        )
    )
    return row


def find(token: str, purpose: TokenPurpose) -> StaffToken:
    """The open link the token names; LinkError when it is unknown, used,
    revoked or expired."""
    if not token or len(token) > 100:
        raise LinkError("This link is not valid.")
    row = db.session.execute(
        db.select(StaffToken).where(
            StaffToken.token_hash == _hash(token), StaffToken.purpose == purpose
        )
    ).scalar_one_or_none()
    if row is None or (purpose == TokenPurpose.PASSWORD_RESET and row.user_id is None):
        raise LinkError("This link is not valid.")
    if row.used_at is not None:
        raise LinkError("This link has been used already. Each link works once.")
    if row.revoked_at is not None:
        raise LinkError("This link was replaced by a newer one or withdrawn.")
    if row.expires_at <= clock.now():
        raise LinkError("This link has expired.")
    return row


def state(row: StaffToken) -> str | None:
    """Why the link's mail should no longer go, or None (send-time check)."""
    if row.purpose == TokenPurpose.PASSWORD_RESET and row.user_id is None:
        return "no staff account has this address"
    if row.used_at is not None:
        return "link used already"
    if row.revoked_at is not None:
        return "link revoked or replaced"
    if row.expires_at <= clock.now():
        return "link expired"
    return None


# --- Invitations.


def invite(email: str, role: Role, by: User) -> StaffToken:
    address = auth.normalise_email(email)
    if auth.user_by_email(address):
        raise auth.AuthError(f"{address} has an account already.")
    hours = current_app.config["STAFF_INVITATION_HOURS"]
    row = issue(TokenPurpose.INVITATION, address, timedelta(hours=hours), role=Role(role), by=by)
    audit.record(by, "invitation.create", address, role=row.role.value, expires_hours=hours)
    return row


def pending_invitations() -> list[StaffToken]:
    return list(
        db.session.execute(
            db.select(StaffToken)
            .where(
                StaffToken.purpose == TokenPurpose.INVITATION,
                StaffToken.used_at.is_(None),
                StaffToken.revoked_at.is_(None),
                StaffToken.expires_at > clock.now(),
            )
            .order_by(StaffToken.created_at.desc())
        ).scalars()
    )


def revoke_invitation(invitation_id: int, by: User) -> StaffToken | None:
    row = db.session.get(StaffToken, invitation_id)
    if row is None or row.purpose != TokenPurpose.INVITATION or row.used_at or row.revoked_at:
        return None
    row.revoked_at = clock.now()
    audit.record(by, "invitation.revoke", row.email)
    return row


def accept_invitation(token: str, password: str) -> User:
    row = find(token, TokenPurpose.INVITATION)
    user = auth.create_user(row.email, password, row.role or Role.MARKETER)
    row.used_at = clock.now()
    db.session.flush()
    audit.record(user, "invitation.accept", user.email, role=user.role.value)
    return user


# --- Password resets.


def request_reset(email: str, ip: str | None) -> None:
    """Queue a reset mail for the address. The same statements run whether
    or not an active account has it (a row and a mail are written either
    way; the worker skips the mail when none has): the answer, its timing
    and its status tell nothing about which addresses exist."""
    address = (email or "").strip().lower()[:320]
    user = auth.user_by_email(address)
    if user is not None and not user.active:
        user = None
    issue(TokenPurpose.PASSWORD_RESET, address, RESET_LIFETIME, user=user)
    audit.record(None, "password.reset_request", address, ip=ip, account=user is not None)


def reset_password(token: str, password: str) -> User:
    """Set the password a reset link is for; every session of the user ends."""
    row = find(token, TokenPurpose.PASSWORD_RESET)
    user = db.session.get(User, row.user_id)
    if user is None or not user.active:
        raise LinkError("This link is not valid.")
    auth.set_password(user, password)
    row.used_at = clock.now()
    audit.record(user, "password.reset", user.email)
    return user
