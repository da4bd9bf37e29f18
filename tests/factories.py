"""Rows a test starts from, made without a browser: straight in the
database or through the service a form calls. Leads, classes, a queue
holding one mail of every kind, and the lead browser's varied set of leads.
Call them inside an app context unless they take the app.

Pages, forms, the clock and mail are in tests/helpers.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import insert, literal, select

from extensions import db
from models import (
    Announcement,
    AnnouncementStatus,
    Lead,
    LeadStatus,
    LeadTopic,
    MailKind,
    OutboxMessage,
    OutboxStatus,
    Role,
    TokenPurpose,
    TokenScope,
    TrainingClass,
    User,
)
from models.outbox import TRANSACTIONAL_KINDS
from services import clock
from services.campaigns import classes
from services.leads import signup, subscriptions
from services.leads.signup import SignupRequest
from services.leads.subscriptions import Evidence
from services.staff import api_tokens, links

# --- Leads.


def make_lead(
    email: str,
    topics: Iterable[str] = ("cspo-classes",),
    *,
    status: LeadStatus = LeadStatus.CONFIRMED,
    name: str | None = None,
    source_slug: str | None = "cspo-certification-benefits",
    created_at: datetime | None = None,
) -> Lead:
    """A lead as signup and confirmation leave it; call in an app context."""
    now = clock.now()
    lead = Lead(
        email=email,
        name=name,
        status=status,
        source_slug=source_slug,
        source_placement="inline",
        created_at=created_at or now - timedelta(days=30),
        confirmed_at=now - timedelta(days=29) if status != LeadStatus.PENDING else None,
        unsubscribed_at=now - timedelta(days=1) if status == LeadStatus.UNSUBSCRIBED else None,
    )
    lead.topics = [LeadTopic(topic=t) for t in topics]
    db.session.add(lead)
    db.session.flush()
    return lead


def bulk_leads(n: int, topic: str = "cspo-classes", prefix: str = "bulk") -> None:
    """n confirmed leads who want `topic`, in two set-based statements."""
    now = clock.now()
    db.session.execute(
        insert(Lead),
        [
            {
                "email": f"{prefix}{i}@example.com",
                "status": LeadStatus.CONFIRMED,
                "created_at": now - timedelta(days=10),
                "confirmed_at": now - timedelta(days=9),
                "source_slug": "cspo-certification-benefits",
            }
            for i in range(n)
        ],
    )
    db.session.execute(
        insert(LeadTopic).from_select(
            ["lead_id", "topic"],
            select(Lead.id, literal(topic)).where(Lead.email.like(f"{prefix}%")),
        )
    )
    db.session.commit()


def subscribed_lead(email: str, topics: Iterable[str] = ("newsletter",)) -> Lead:
    """A pending lead, signed up through the service the form calls (consent
    recorded, confirmation queued); in an app context, committed."""
    signup.subscribe(SignupRequest(email=email, topics=list(topics), placement="page"), Evidence())
    db.session.commit()
    return subscriptions.lead_by_email(email)


# --- Classes.

# Before the autumn DST change of 2026, so its classes are still upcoming.
SEPT_2026 = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)


def make_class(
    *,
    title: str = "CSPO online",
    start: tuple[date, time] | None = None,
    hours: int = 8,
    tz: str = "Europe/Berlin",
    registration_url: str | None = "https://tickets.example.org/cspo/1",
    **fields,
) -> TrainingClass:
    """A class through the same service the admin form uses; app context."""
    day, wall = start or ((clock.now() + timedelta(days=40)).date(), time(9, 0))
    end = datetime.combine(day, wall) + timedelta(hours=hours)
    cls = TrainingClass()
    classes.apply(
        cls,
        classes.ClassInput(
            title=title,
            start_day=day,
            start_time=wall,
            end_day=end.date(),
            end_time=end.time(),
            timezone=tz,
            registration_url=registration_url,
            **fields,
        ),
    )
    cls.created_at = clock.now()
    db.session.add(cls)
    db.session.flush()
    return cls


# --- Announcements.


def due_announcement(topic: str = "cspo-classes", **fields) -> Announcement:
    """A scheduled announcement whose time has come (the planner fans it
    out on its next pass); in an app context, committed."""
    now = clock.now()
    ann = Announcement(
        subject="New CSPO dates",
        body="Hello {{ first_name or 'there' }}. [Unsubscribe]({{ unsubscribe_url }})",
        topic=topic,
        status=AnnouncementStatus.SCHEDULED,
        send_at=now - timedelta(seconds=1),
        send_timezone="UTC",
        created_at=now - timedelta(minutes=5),
        **fields,
    )
    db.session.add(ann)
    db.session.commit()
    return ann


# --- One mail of every kind, queued to leads inserted directly (names bypass the form).

MARKETING_KINDS = set(MailKind) - TRANSACTIONAL_KINDS


def queue_staff_mail(email: str) -> None:
    """Inside an app context: a staff user at `email` and one due mail of
    each staff kind to it (an invitation, a password reset, a notice)."""
    now = clock.now()
    user = User(email=email, password_hash="-", role=Role.MARKETER, created_at=now)
    db.session.add(user)
    db.session.flush()
    links.issue(TokenPurpose.INVITATION, email, timedelta(hours=72), role=Role.ADMIN)
    links.issue(TokenPurpose.PASSWORD_RESET, email, timedelta(hours=1), user=user)
    db.session.add(
        OutboxMessage(kind=MailKind.STAFF_NOTICE, to_email=email, send_after=now, created_at=now)
    )


def queue_every_kind(
    names: list[str | None], *, class_title: str = "CSPO live online", domain: str = "example.com"
) -> dict[str, dict[str, str]]:
    """Inside an app context: for each name, a pending lead and a confirmed
    lead (both topics), a class starting in 30 days, an announcement with the
    class title in its subject and the lead's name in its body (a visitor's
    text may not go into a subject), and one due outbox row of every MailKind
    (the staff kinds to a staff address, staff<i>@domain: queue_staff_mail).
    Returns {email: {"name": ..., "status": ...}} for the leads. The caller
    commits."""
    now = clock.now()
    cls = TrainingClass(
        title=class_title,
        starts_at=now + timedelta(days=30),
        ends_at=now + timedelta(days=31),
        timezone="Europe/Berlin",
        online=True,
        trainer="Pat Trainer",
        price=Decimal("1195.00"),
        seats=12,
        registration_url="https://register.example/cspo",
        created_at=now,
    )
    db.session.add(cls)
    ann = Announcement(
        subject="New dates: {{ class.title }}",
        body=(
            "Hello {{ first_name }},\n\nNew dates: {{ class.title }}, {{ class.start }}.\n\n"
            "[Register]({{ class.register_url }}) · [Unsubscribe]({{ unsubscribe_url }})\n"
        ),
        topic="cspo-classes",
        training_class=cls,
        status=AnnouncementStatus.SENDING,
        created_at=now,
    )
    db.session.add(ann)
    db.session.flush()
    leads: dict[str, dict[str, str]] = {}
    rows = []
    for i, name in enumerate(names):
        for status in (LeadStatus.PENDING, LeadStatus.CONFIRMED):
            email = f"{status.value}{i}@{domain}"
            lead = Lead(
                email=email,
                name=name,
                status=status,
                created_at=now,
                confirmed_at=now if status == LeadStatus.CONFIRMED else None,
                topics=[LeadTopic(topic="cspo-classes"), LeadTopic(topic="newsletter")],
            )
            db.session.add(lead)
            db.session.flush()
            leads[email] = {"name": name, "status": status.value}
            if status == LeadStatus.PENDING:
                kinds = [MailKind.CONFIRMATION, MailKind.CONFIRM_REMINDER]
            else:
                kinds = sorted(MARKETING_KINDS | {MailKind.ALREADY_SUBSCRIBED})
            for kind in kinds:
                rows.append(
                    OutboxMessage(
                        kind=kind,
                        lead_id=lead.id,
                        status=OutboxStatus.QUEUED,
                        send_after=now,
                        created_at=now,
                        attempts=0,
                        announcement_id=ann.id if kind == MailKind.ANNOUNCEMENT else None,
                        training_class_id=cls.id if kind == MailKind.CLASS_REMINDER else None,
                    )
                )
        queue_staff_mail(f"staff{i}@{domain}")
    db.session.add_all(rows)
    return leads


# --- The lead browser's set: varied leads, and which of them each filter shows.

BASE = datetime(2026, 3, 20, 23, 30, tzinfo=UTC)
ARTICLE_SLUG = "cspo-certification-benefits"
OTHER_SLUG = "how-hard-is-the-cspo"
TRAINING_SLUG = "certified-scrum-product-owner-cspo-training"
N_LEADS = 130


@dataclass
class Seeded:
    public_id: str
    email: str
    name: str | None
    status: str
    source_slug: str | None
    source_placement: str | None
    utm_source: str | None
    utm_campaign: str | None
    created_at: datetime
    topics: list[str] = field(default_factory=list)
    id: int = 0


def make_leads(n: int = N_LEADS) -> list[Seeded]:
    """Varied leads, deterministic. Leads 44-57 share one signup instant, so a
    page boundary falls inside a tie of the sort key."""
    prefixes = ["ann", "anna", "bob", "carla", "dave"]
    domains = ["example.com", "example.org", "test.example"]
    names = ["Ann", "anna", "Annabel", "Ben", "Zoë", "Élodie", "O'Brien", None, "bob", "Ann😀"]
    statuses = ["pending", "confirmed", "confirmed", "unsubscribed"]
    places = [
        (ARTICLE_SLUG, "inline"),
        (ARTICLE_SLUG, "end"),
        (OTHER_SLUG, "inline"),
        (TRAINING_SLUG, "training"),
    ]
    places.append((None, "page"))
    utm_sources = [None, "linkedin", "newsletter", "google"]
    campaigns = [None, "spring-cspo", "autumn-cspo"]
    topic_sets = [["cspo-classes"], ["newsletter"], ["cspo-classes", "newsletter"]]
    leads = []
    for i in range(n):
        created = BASE - timedelta(hours=7 * i, minutes=i % 3)
        if 44 <= i <= 57:
            created = BASE - timedelta(hours=7 * 44)
        slug, placement = places[i % len(places)]
        leads.append(
            Seeded(
                public_id=f"lead{i:04d}",
                email=f"{prefixes[i % 5]}.{i:03d}@{domains[i % 3]}",
                name=names[(i * 7) % len(names)],
                status=statuses[(i * 3) % len(statuses)],
                source_slug=slug,
                source_placement=placement,
                utm_source=utm_sources[(i // 2) % len(utm_sources)],
                utm_campaign=campaigns[(i // 3) % len(campaigns)],
                created_at=created,
                topics=topic_sets[(i // 5) % len(topic_sets)],
            )
        )
    return leads


def store(app, leads: list[Seeded]) -> list[Seeded]:
    with app.app_context():
        db.session.execute(
            insert(Lead),
            [
                {
                    "public_id": s.public_id,
                    "email": s.email,
                    "name": s.name,
                    "status": LeadStatus(s.status),
                    "source_slug": s.source_slug,
                    "source_placement": s.source_placement,
                    "utm_source": s.utm_source,
                    "utm_campaign": s.utm_campaign,
                    "created_at": s.created_at,
                    "confirmed_at": s.created_at + timedelta(minutes=5)
                    if s.status != "pending"
                    else None,
                }
                for s in leads
            ],
        )
        ids = dict(db.session.execute(select(Lead.public_id, Lead.id)).all())
        for s in leads:
            s.id = ids[s.public_id]
        topic_rows = [{"lead_id": s.id, "topic": t} for s in leads for t in s.topics]
        if topic_rows:
            db.session.execute(insert(LeadTopic), topic_rows)
        db.session.commit()
    return leads


def newest_first(leads):
    return sorted(leads, key=lambda s: (s.created_at, s.id), reverse=True)


def q_matches(q: str):
    q = q.lower()
    return lambda s: s.email.startswith(q) or (s.name or "").lower().startswith(q)


def day_start(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


SINCE = date(2026, 3, 1)
UNTIL = date(2026, 3, 10)

# (query string, which seeded leads match)
CASES = [
    ({}, lambda s: True),
    ({"q": "ann"}, q_matches("ann")),
    ({"q": "anna."}, q_matches("anna.")),
    ({"q": "ANN"}, q_matches("ann")),
    ({"q": "bob.002"}, q_matches("bob.002")),
    ({"q": "ÉLODIE"}, q_matches("élodie")),
    ({"q": "zo"}, q_matches("zo")),
    ({"q": "ann😀"}, q_matches("ann😀")),
    ({"q": "o'b"}, q_matches("o'b")),
    ({"q": "Élo"}, q_matches("élo")),
    ({"q": "élodie"}, q_matches("élodie")),
    ({"q": "  Ben  "}, q_matches("ben")),
    ({"status": "pending"}, lambda s: s.status == "pending"),
    ({"status": "confirmed"}, lambda s: s.status == "confirmed"),
    ({"status": "unsubscribed"}, lambda s: s.status == "unsubscribed"),
    ({"topic": "newsletter"}, lambda s: "newsletter" in s.topics),
    ({"topic": "cspo-classes"}, lambda s: "cspo-classes" in s.topics),
    ({"source": ARTICLE_SLUG}, lambda s: s.source_slug == ARTICLE_SLUG),
    ({"source": TRAINING_SLUG}, lambda s: s.source_slug == TRAINING_SLUG),
    ({"placement": "inline"}, lambda s: s.source_placement == "inline"),
    ({"placement": "page"}, lambda s: s.source_placement == "page"),
    ({"utm_source": "linkedin"}, lambda s: s.utm_source == "linkedin"),
    ({"utm_campaign": "spring-cspo"}, lambda s: s.utm_campaign == "spring-cspo"),
    ({"since": SINCE.isoformat()}, lambda s: s.created_at >= day_start(SINCE)),
    (
        {"until": UNTIL.isoformat()},
        lambda s: s.created_at < day_start(UNTIL + timedelta(days=1)),
    ),
    (
        {"since": SINCE.isoformat(), "until": UNTIL.isoformat()},
        lambda s: day_start(SINCE) <= s.created_at < day_start(UNTIL + timedelta(days=1)),
    ),
    ({"since": "2026-03-20", "until": "2026-03-20"}, lambda s: s.created_at.date() == BASE.date()),
    (
        {"status": "confirmed", "topic": "newsletter", "source": ARTICLE_SLUG, "q": "a"},
        lambda s: (
            s.status == "confirmed"
            and "newsletter" in s.topics
            and s.source_slug == ARTICLE_SLUG
            and q_matches("a")(s)
        ),
    ),
    ({"utm_source": "nobody-uses-this"}, lambda s: False),
]


# --- API tokens.


def make_api_token(
    email: str = "api@example.com",
    role: Role = Role.MARKETER,
    scope: TokenScope = TokenScope.WRITE,
) -> str:
    """A staff user (made when new; no password: the API never asks for one)
    and a token of theirs, committed; returns the secret the API takes."""
    user = db.session.execute(db.select(User).where(User.email == email)).scalar_one_or_none()
    if user is None:
        user = User(email=email, password_hash="!", role=role)
        db.session.add(user)
        db.session.flush()
    _token, secret = api_tokens.create(user, f"{scope.value} token", scope)
    db.session.commit()
    return secret
