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
