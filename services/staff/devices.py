"""Device cookies: sign-in limits that nobody can use to lock a user out.

After OWASP's "Slow Down Online Guessing Attacks with Device Cookies". A
browser that signed in to an account gets a signed cookie naming the
account (by id) and the browser (a random nonce). Its later sign-ins to that
account are limited per browser; every other attempt on the account shares
the allowance of browsers it has never signed in from. Guessing from
anywhere stays as slow as before, and the owner's own browser stays open.
The cookie grants nothing else: the password is still checked.
"""

from __future__ import annotations

import secrets

from services import tokens
from services.staff.auth import user_by_email

COOKIE_NAME = "login_device"
# Renewed at each sign-in; a browser unused this long is a stranger again.
MAX_AGE_SECONDS = 180 * 24 * 3600
PURPOSE = "login-device"


def issue(user_id: int) -> str:
    """A new device cookie's value for a browser that just signed in."""
    return tokens.make(PURPOSE, [user_id, secrets.token_urlsafe(16)])


def trusted_device(cookie: str | None, email: str) -> str | None:
    """The browser's nonce when `cookie` is a valid device cookie for the
    account `email` names; None for no cookie, a forged or expired one, or
    one made for another account."""
    # No query for what no account can be (PostgreSQL text refuses NUL).
    if not cookie or not email or len(email) > 320 or not email.isprintable():
        return None
    try:
        value, _signed = tokens.read(PURPOSE, cookie, max_age=MAX_AGE_SECONDS)
    except tokens.TokenInvalid:
        return None
    if not (isinstance(value, list) and len(value) == 2):
        return None
    user_id, nonce = value
    if not isinstance(user_id, int) or not isinstance(nonce, str) or not nonce:
        return None
    user = user_by_email(email)
    return nonce if user is not None and user.id == user_id else None
