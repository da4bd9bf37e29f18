"""The consent wording shown beside each form, versioned by its hash."""

from __future__ import annotations

import hashlib

from sqlalchemy.dialects import postgresql, sqlite

from extensions import db
from models import ConsentText

PLACEMENTS = ("inline", "end", "training", "page")

ARTICLE_TEXT = (
    "Tick what you would like to receive. We will email you a link to confirm "
    "your address, and send nothing else until you click it. Every email has "
    "a one-click unsubscribe link, and we never share your address."
)
TRAINING_TEXT = (
    "We will email you when new CSPO classes are scheduled, after you confirm "
    "your address with the link we send. Every email has a one-click "
    "unsubscribe link, and we never share your address."
)


def text_for(placement: str) -> str:
    return TRAINING_TEXT if placement == "training" else ARTICLE_TEXT


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_text(text: str) -> str:
    """Store the wording once (idempotent under concurrency); return its hash."""
    digest = text_hash(text)
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    db.session.execute(insert(ConsentText).values(hash=digest, text=text).on_conflict_do_nothing())
    return digest
