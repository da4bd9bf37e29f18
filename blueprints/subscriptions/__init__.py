"""Subscriptions: the public signup and the links in mail (confirm,
preferences, unsubscribe).

One blueprint, `bp` (made in base.py); importing the view modules adds
their routes to it."""

from blueprints.subscriptions import links, signup  # noqa: F401
from blueprints.subscriptions.base import bp

__all__ = ["bp"]
