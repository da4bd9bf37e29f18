"""Helpers the test modules share (fixtures are in conftest.py)."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from html import unescape

from extensions import db
from models import Role, User
from services import auth

PASSWORD = "correct horse battery staple"
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*?value="([^"]+)"')


# --- The clock: services.clock reads a FrozenClock while a test holds it.

# Where the `frozen` fixture (conftest.py) starts the clock.
T0 = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


class FrozenClock:
    """A moment that moves only when the test says so. With `step` set, each
    read moves it on by that much afterwards (time passing during a request)."""

    def __init__(self, now: datetime = T0):
        self.now = now
        self.step = timedelta(0)

    def __call__(self) -> datetime:
        now = self.now
        self.now += self.step
        return now

    def set(self, moment: datetime) -> None:
        self.now = moment

    def advance(self, seconds: float = 0, **delta: float) -> None:
        self.now += timedelta(seconds=seconds, **delta)


# --- Staff: accounts, sessions and the CSRF token of staff forms.


@functools.cache
def _password_hash() -> str:
    # argon2id is slow on purpose: hash the test password once per run.
    return auth.hash_password(PASSWORD)


def add_user(app, email: str = "marketer@example.com", role: Role = Role.MARKETER) -> str:
    """A staff user with PASSWORD (same row create_user makes, hashed once);
    returns the id Flask-Login keeps in the session."""
    with app.app_context():
        user = User(email=email, password_hash=_password_hash(), role=Role(role))
        db.session.add(user)
        db.session.commit()
        return user.get_id()


def sign_in(client, user_id: str) -> None:
    """Put the user in the client's session without an argon2 round trip."""
    with client.session_transaction() as session:
        session["_user_id"] = user_id
        session["_fresh"] = True


def sign_in_as(app, client, role: Role = Role.MARKETER, email: str | None = None) -> str:
    user_id = add_user(app, email or f"{role.value}@example.com", role)
    sign_in(client, user_id)
    return user_id


def csrf_token(client, path: str = "/login") -> str:
    html = client.get(path).get_data(as_text=True)
    match = CSRF_FIELD.search(html)
    assert match, f"no csrf_token on {path}"
    return unescape(match.group(1))
