"""Personal API tokens: made, listed, revoked, and the one check of a token
that a request presents. The caller commits."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import joinedload

from extensions import db
from models import ApiToken, Role, TokenScope, User
from services import clock
from services.staff import audit

# What every token starts with, so a leaked one is recognised (secret scanners).
TOKEN_MARK = "lk_"  # noqa: S105 (a prefix, not a secret)
# Shown on the tokens page: the mark and the first random characters.
PREFIX_LENGTH = len(TOKEN_MARK) + 8
# Last use is written at most this often per token: one write a minute,
# not one per request.
LAST_USED_EVERY = timedelta(minutes=1)
MAX_NAME = 100


class TokenError(ValueError):
    pass


def hash_token(secret: str) -> str:
    # 256 random bits need no slow hash: nobody can guess one to test against it.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create(user: User, name: str, scope: TokenScope) -> tuple[ApiToken, str]:
    """A new token of `user`, flushed, and its secret (shown once, never stored)."""
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise TokenError(f"Give the token a name of 1 to {MAX_NAME} characters.")
    secret = TOKEN_MARK + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name,
        scope=TokenScope(scope),
        prefix=secret[:PREFIX_LENGTH],
        token_hash=hash_token(secret),
        created_at=clock.now(),
    )
    db.session.add(token)
    db.session.flush()
    audit.record(user, "api_token.create", token.public_id, name=name, scope=token.scope.value)
    return token, secret


def of_user(user: User) -> list[ApiToken]:
    """The user's tokens, newest first, revoked ones included."""
    return list(
        db.session.execute(
            db.select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())
        ).scalars()
    )


def by_public_id(user: User, public_id: str) -> ApiToken | None:
    """One of the user's own tokens (nobody revokes another's by its id)."""
    return db.session.execute(
        db.select(ApiToken).where(ApiToken.public_id == public_id, ApiToken.user_id == user.id)
    ).scalar_one_or_none()


def revoke(user: User, token: ApiToken) -> bool:
    """False when it was revoked already."""
    if token.revoked_at is not None:
        return False
    token.revoked_at = clock.now()
    audit.record(user, "api_token.revoke", token.public_id, name=token.name)
    return True


def authenticate(secret: str) -> ApiToken | None:
    """The live token with this secret, of an active user; None otherwise.

    Records its last use in a short transaction of its own (at most once a
    minute), so the request's own work stays one transaction."""
    if not secret.startswith(TOKEN_MARK) or len(secret) > 200:
        return None
    # With its user in the same statement: every request needs the role.
    token = db.session.execute(
        db.select(ApiToken)
        .where(ApiToken.token_hash == hash_token(secret))
        .options(joinedload(ApiToken.user))
    ).scalar_one_or_none()
    if token is None or token.revoked_at is not None or not token.user.active:
        return None
    now = clock.now()
    if token.last_used_at is None or token.last_used_at <= now - LAST_USED_EVERY:
        db.session.execute(
            update(ApiToken)
            .where(ApiToken.id == token.id)
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
    return token


def refusal(token: ApiToken, scope: TokenScope, role: Role) -> str | None:
    """Why the token may not do this, or None: a read token reads only, and
    a token does what its user's role may."""
    if scope == TokenScope.WRITE and token.scope != TokenScope.WRITE:
        return "This needs a write token; this one is read-only."
    if not token.user.can(role):
        return f"This needs the token of an {role.value}; its user is a {token.user.role.value}."
    return None
