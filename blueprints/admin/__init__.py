"""Admin: classes, announcements, outbox, suppressions, users, audit log.

One blueprint, `bp` (made in base.py); importing the view modules adds
their routes to it."""

from blueprints.admin import announcements, classes, outbox, users  # noqa: F401
from blueprints.admin.base import bp

__all__ = ["bp"]
