"""What the product counts, named `leads_...`. Importing this imports
prometheus_client: after multiproc.configure (app.py does it first).

Label values are bounded: sources are the articles, the training page or
"embed"/"other" (an embed's label is the visitor's to choose), endpoints are
URL rule endpoints, kinds and statuses are enums.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from sqlalchemy import event
from sqlalchemy.orm import Session

from extensions import db
from services.leads.consent import PLACEMENTS

SIGNUPS = Counter("leads_signups", "New leads from a signup form", ["source"])
CONFIRMATIONS = Counter("leads_confirmations", "Leads who confirmed their address", ["source"])
UNSUBSCRIBES = Counter("leads_unsubscribes", "Leads who withdrew consent", ["source", "channel"])
MAIL_SENT = Counter("leads_mail_sent", "Mails the SMTP server took (250)", ["kind"])
SMTP_ERRORS = Counter(
    "leads_smtp_errors", "Failed SMTP deliveries, by reply class", ["error_class"]
)
INBOUND_EVENTS = Counter(
    "leads_inbound_events", "Mail that came back: bounces, complaints...", ["kind"]
)
# Cached public pages answer in well under a millisecond: the low buckets.
HTTP_LATENCY = Histogram(
    "leads_http_request_duration_seconds",
    "Time to answer a request (until the body starts), by URL rule endpoint",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

OTHER_SOURCE = "other"
EMBED_SOURCE = "embed"
# The forms on this site's own pages: every placement but the embed.
OUR_PAGES = frozenset(PLACEMENTS) - {EMBED_SOURCE}
_PENDING = "leads.metrics.pending"


def source_label(source_slug: str | None, placement: str | None) -> str:
    """The lead's source as a bounded label. A form on our pages records an
    article's slug or the training page's, checked when it signed up
    (signup_guard.attribution); the embedded form's label is the visitor's
    to choose, so it counts as "embed"; anything else as "other"."""
    if placement == "embed":
        return EMBED_SOURCE
    if source_slug and placement in OUR_PAGES:
        return source_slug
    return OTHER_SOURCE


def smtp_error_class(code: int | None) -> str:
    if code is None:
        return "connection"
    return f"{code // 100}xx"


def count_on_commit(child) -> None:
    """Increment a counter's child once db.session's transaction commits;
    a rollback drops it. Services do not commit: their callers do. Counts
    are kept per transaction, so a savepoint rolled back drops its own."""
    session = db.session()  # the Session itself: the scoped proxy lacks these methods
    transaction = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_PENDING, {}).setdefault(transaction, []).append(child)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    pending = session.info.get(_PENDING)
    if not pending:
        return
    ending = session.get_nested_transaction() or session.get_transaction()
    children = pending.pop(ending, [])
    if ending.nested:  # a savepoint: its counts wait for the transaction around it
        pending.setdefault(ending.parent, []).extend(children)
        return
    for child in children:
        child.inc()


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction) -> None:
    # Still pending at its end: rolled back (or closed) without a commit.
    pending = session.info.get(_PENDING)
    if pending:
        pending.pop(transaction, None)
