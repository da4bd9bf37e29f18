"""The consent wording shown beside each form, versioned by its hash."""

from __future__ import annotations

import hashlib

from flask import current_app

from extensions import db
from models import ConsentText
from services import clock, upsert

# "not-found": the form on the 404 page, where readers of a broken link land.
PLACEMENTS = ("inline", "end", "training", "page", "not-found", "embed")

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
    known: set[str] = current_app.extensions.setdefault("consent_texts_stored", set())
    if digest in known:
        return digest
    # Read before any write of the caller's: a row found then is committed,
    # and consent texts are never deleted, so it need not be read again.
    fresh = not db.session().in_transaction()
    found = db.session.execute(
        db.select(ConsentText.hash).where(ConsentText.hash == digest)
    ).first()
    if found is None:
        upsert.insert_ignore(
            ConsentText,
            {"hash": digest, "text": text, "first_seen_at": clock.now()},
            conflict=("hash",),
        )
    elif fresh:
        known.add(digest)
    return digest
