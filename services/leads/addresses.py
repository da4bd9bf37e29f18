"""Email address syntax and normalisation (email-validator)."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

MAX_EMAIL_LENGTH = 254


class InvalidAddress(ValueError):
    pass


def normalise(raw: str, check_deliverability: bool = False) -> str:
    """The one spelling we store: trimmed, validated, lower-cased.

    The local part is case-sensitive in theory and never in practice; folding
    it makes `Ann@X.com` and ` ann@x.com ` one lead.
    """
    value = (raw or "").strip()
    if not value:
        raise InvalidAddress("Enter your email address.")
    if len(value) > MAX_EMAIL_LENGTH:
        raise InvalidAddress("That email address is too long.")
    try:
        result = validate_email(value, check_deliverability=check_deliverability)
    except EmailNotValidError as exc:
        raise InvalidAddress(f"That doesn't look like an email address: {exc}") from exc
    return result.normalized.lower()


def normalise_all(raws: list[str]) -> list[str | InvalidAddress]:
    """normalise() of each address, with the error in place of a refused one:
    a whole batch in one call, as an import's checking process makes it."""
    checked: list[str | InvalidAddress] = []
    for raw in raws:
        try:
            checked.append(normalise(raw))
        except InvalidAddress as exc:
            checked.append(exc)
    return checked
