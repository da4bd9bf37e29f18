"""Fake leads in bulk, for trying the workspace at scale and for benchmarks.

Rows go in with executemany over Core inserts in large transactions: about a
million leads a minute on SQLite.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import func, insert, select, text

from extensions import db
from models import Lead, LeadStatus, LeadTopic
from services import clock, stats, topics

ARTICLES = [
    "cspo-certification-benefits",
    "how-hard-is-the-cspo",
    "certified-scrum-product-owner-cspo-training",
]
PLACEMENTS = ["inline", "end", "training"]
UTM_SOURCES = [None, None, "linkedin", "newsletter", "google", "twitter"]
CAMPAIGNS = [None, "spring-cspo", "autumn-cspo"]
NAMES = ["Ann", "Ben", "Chloé", "Dev", "Eva", "Farid", "Grace", "Hiro", None]
CHUNK = 20_000


def generate_leads(
    count: int, *, days: int = 365, seed: int = 1, on_progress: Callable[[int], None] | None = None
) -> int:
    rng = random.Random(seed)
    now = clock.now()
    start_id = (db.session.execute(select(func.max(Lead.id))).scalar() or 0) + 1
    tag = secrets.token_hex(3)
    made = 0
    lead_table, topic_table = Lead.__table__, LeadTopic.__table__
    while made < count:
        n = min(CHUNK, count - made)
        leads, lead_topics = [], []
        for i in range(n):
            lead_id = start_id + made + i
            created = now - timedelta(seconds=rng.randrange(days * 86400))
            status = rng.choices(
                [LeadStatus.CONFIRMED, LeadStatus.PENDING, LeadStatus.UNSUBSCRIBED], [70, 20, 10]
            )[0]
            placement = rng.choice(PLACEMENTS)
            leads.append(
                {
                    "id": lead_id,
                    "public_id": f"g{tag}{lead_id:x}",
                    "email": f"lead{lead_id}.{tag}@example.com",
                    "name": rng.choice(NAMES),
                    "status": status,
                    "source_slug": ARTICLES[2]
                    if placement == "training"
                    else rng.choice(ARTICLES[:2]),
                    "source_placement": placement,
                    "utm_source": rng.choice(UTM_SOURCES),
                    "utm_medium": None,
                    "utm_campaign": rng.choice(CAMPAIGNS),
                    "utm_term": None,
                    "utm_content": None,
                    "referrer": None,
                    "created_at": created,
                    "confirmed_at": created + timedelta(minutes=5)
                    if status != LeadStatus.PENDING
                    else None,
                    "unsubscribed_at": created + timedelta(days=1)
                    if status == LeadStatus.UNSUBSCRIBED
                    else None,
                    "last_confirmation_at": created,
                }
            )
            wanted = [t for t in topics.TOPICS if rng.random() < 0.6] or [topics.CSPO_CLASSES]
            lead_topics.extend({"lead_id": lead_id, "topic": t} for t in wanted)
        db.session.execute(insert(lead_table), leads)
        db.session.execute(insert(topic_table), lead_topics)
        db.session.commit()
        made += n
        if on_progress:
            on_progress(n)
    stats.rebuild()
    db.session.commit()
    if db.session.get_bind().dialect.name == "sqlite":
        # Fresh statistics, or SQLite's planner guesses which index to use.
        db.session.execute(text("ANALYZE"))
        db.session.commit()
    return made
