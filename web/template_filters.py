"""Jinja filters shared by the staff pages' templates."""

from __future__ import annotations

from flask import Flask

from services.staff.browsers import browser_label


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`n | plural("signup")`: "1 signup", "2 signups", "1,200 signups"."""
    word = singular if count == 1 else (plural_form or singular + "s")
    return f"{count:,} {word}"


def key_groups(secret: str, size: int = 4) -> list[str]:
    """A base32 key in groups of four, to type into an authenticator app."""
    return [secret[i : i + size] for i in range(0, len(secret), size)]


def init_app(app: Flask) -> None:
    app.add_template_filter(plural, "plural")
    app.add_template_filter(key_groups, "key_groups")
    app.add_template_filter(browser_label, "browser_label")
