"""What a staff member does on their own account page; each act is audited
in the caller's transaction."""

from __future__ import annotations

from models import User
from services.staff import audit, auth, sessions, two_factor


class WrongPassword(auth.AuthError):
    pass


def change_password(user: User, current: str, new: str) -> None:
    """Needs the current password; ends every session of the user (the
    caller starts a new one for the browser that asked)."""
    if not auth.verify_password(user, current):
        raise WrongPassword("That is not your current password.")
    auth.set_password(user, new)
    audit.record(user, "password.change", user.email)


def end_session(user: User, session_id: int) -> bool:
    if not sessions.end_one(user, session_id):
        return False
    audit.record(user, "session.end", user.email, session=session_id)
    return True


def end_other_sessions(user: User, keep: int | None) -> int:
    ended = sessions.end_all(user, keep=keep)
    audit.record(user, "session.end_others", user.email, ended=ended)
    return ended


def enable_two_factor(user: User, secret: str, code: str) -> list[str]:
    codes = two_factor.enable(user, secret, code)
    audit.record(user, "2fa.enable", user.email)
    return codes


def proves_identity(user: User, proof: str) -> bool:
    """The user's password or a current 2FA code."""
    return two_factor.verify_code(user, proof) or auth.verify_password(user, proof)


def regenerate_recovery_codes(user: User) -> list[str]:
    codes = two_factor.new_recovery_codes(user)
    audit.record(user, "2fa.recovery_codes_regenerated", user.email)
    return codes


def disable_two_factor(user: User) -> None:
    two_factor.disable(user)
    audit.record(user, "2fa.disable", user.email)


def reset_two_factor(user: User, by: User | None) -> int:
    """For someone who lost both their phone and their recovery codes: an
    admin (or `flask users reset-2fa`, by=None) turns their 2FA off and ends
    every session of theirs; they sign in with the password and set it up
    again. Not for oneself: the account page does that with a proof."""
    if by is not None and by.id == user.id:
        raise auth.AuthError("Use your account page to turn off your own two-factor sign-in.")
    if not user.two_factor_enabled:
        raise auth.AuthError(f"{user.email} has no two-factor sign-in to turn off.")
    two_factor.disable(user)
    ended = sessions.end_all(user)
    audit.record(by, "2fa.reset", user.email, sessions_ended=ended)
    return ended
