"""Admin: classes, announcements, outbox, suppressions, deliverability,
users, audit log,
outgoing webhooks.

One blueprint, `bp` (made in base.py); importing the view modules adds
their routes to it."""

from blueprints.admin import (  # noqa: F401
    announcements,
    classes,
    deliverability,
    outbox,
    users,
    webhooks,
)
from blueprints.admin.base import bp

__all__ = ["bp"]
