"""services.upsert on SQLite and PostgreSQL: what each helper writes, and
that SQLAlchemy compiles its ON CONFLICT statements once, not per call."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import bindparam, func, select, text

from extensions import db
from models import Lead, LeadStatus, MailKind, OutboxMessage, SignupStatsDaily
from services import upsert
from services.delivery import outbox
from services.leads import signup, subscriptions
from services.reporting import funnel

NOW = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
DAY = date(2026, 5, 4)


def _outbox_keys() -> list[str | None]:
    return list(db.session.execute(select(OutboxMessage.dedupe_key)).scalars())


def test_insert_ignore_says_whether_it_wrote(app):
    with app.app_context():
        row = outbox.row(MailKind.WELCOME, None, NOW, dedupe_key="welcome:1")
        assert upsert.insert_ignore(OutboxMessage, row, ("dedupe_key",)) is True
        assert upsert.insert_ignore(OutboxMessage, row, ("dedupe_key",)) is False
        conn = db.session.connection()
        assert upsert.insert_ignore(OutboxMessage, row, ("dedupe_key",), conn) is False
        db.session.commit()
        assert _outbox_keys() == ["welcome:1"]


def test_insert_ignore_many_leaves_out_existing_keys_only(app):
    with app.app_context():
        outbox.enqueue(MailKind.WELCOME, None, dedupe_key="b")
        rows = [outbox.row(MailKind.WELCOME, None, NOW, dedupe_key=key) for key in ("a", "b", None)]
        upsert.insert_ignore_many(OutboxMessage, rows, ("dedupe_key",))
        # A NULL key never conflicts: written again, on the caller's connection.
        upsert.insert_ignore_many(OutboxMessage, rows[2:], ("dedupe_key",), db.session.connection())
        db.session.commit()
        assert Counter(_outbox_keys()) == {"a": 1, "b": 1, None: 2}


def test_insert_or_add_adds_to_the_row_with_the_same_key(app):
    with app.app_context():
        funnel.bump(DAY, "article", "inline", None, submissions=1, signups=1)
        funnel.bump(DAY, "article", "inline", None, conn=db.session.connection(), submissions=2)
        funnel.bump(DAY, "article", "end", None, submissions=1)
        db.session.commit()
        rows = db.session.execute(
            select(
                SignupStatsDaily.placement, SignupStatsDaily.submissions, SignupStatsDaily.signups
            ).order_by(SignupStatsDaily.placement)
        ).all()
        assert [tuple(r) for r in rows] == [("end", 1, 0), ("inline", 3, 1)]


def test_upserts_of_the_same_shape_keep_their_own_sql(app):
    table = SignupStatsDaily.__table__
    key = ("day", "source_slug", "placement", "utm_source")

    def values(insert):
        return insert(table).values({c: bindparam(c) for c in (*key, "clicks")})

    keep = upsert.Upsert(lambda insert: values(insert).on_conflict_do_nothing())

    def add(insert):
        stmt = values(insert)
        return stmt.on_conflict_do_update(
            index_elements=list(key), set_={"clicks": table.c.clicks + stmt.excluded.clicks}
        )

    adding = upsert.Upsert(add)
    params = {"day": DAY, "source_slug": "a", "placement": "p", "utm_source": "", "clicks": 1}
    with app.app_context():
        for stmt in (keep, adding, keep, adding):
            stmt.execute(params)
        db.session.commit()
        assert db.session.execute(select(SignupStatsDaily.clicks)).scalar_one() == 3


def test_signup_statements_are_compiled_once(app, caplog):
    # SQLAlchemy's SQL log says how each statement was compiled: "[no key]"
    # is the dialects' ON CONFLICT construct compiled again for this call.
    def sign_up(email: str) -> None:
        signup.subscribe(
            signup.SignupRequest(
                email=email, topics=["newsletter", "cspo-classes"], placement="inline"
            ),
            subscriptions.Evidence(ip="192.0.2.1", user_agent="test"),
        )
        db.session.commit()

    with app.app_context():
        sign_up("first@example.com")
        db.session.remove()
        caplog.set_level(logging.INFO, logger="sqlalchemy.engine.Engine")
        sign_up("second@example.com")
        sign_up("first@example.com")  # known, and within its mail window
        funnel.bump_for_lead(subscriptions.lead_by_email("second@example.com"), confirmed=1)
        db.session.commit()
        # Two mails each, but one for the throttled post (its reminder exists).
        assert db.session.execute(select(func.count()).select_from(OutboxMessage)).scalar() == 5
    compiled = [m for m in caplog.messages if m.startswith("[")]
    assert len(compiled) >= 11
    assert not [m for m in compiled if m.startswith("[no key")]


BULK_COLUMNS = ("public_id", "email", "name", "source_slug")


def _bulk_constants(at: datetime) -> dict:
    return {
        "status": LeadStatus.CONFIRMED,
        "source_placement": "import",
        "created_at": at,
        "confirmed_at": at,
        "last_confirmation_at": None,
    }


def test_insert_rows_stores_what_the_orm_stores_and_skips_existing_keys(app):
    with app.app_context():
        orm = Lead(public_id="orm", email="orm@example.com", source_slug="crm")
        db.session.add(orm)
        for name, value in _bulk_constants(NOW).items():
            setattr(orm, name, value)
        db.session.flush()
        upsert.insert_rows(
            db.session.connection(),
            Lead.__table__,
            BULK_COLUMNS,
            [("bulk", "bulk@example.com", "Ann", "crm"), ("lost", "orm@example.com", None, "x")],
            constants=_bulk_constants(NOW),
            conflict=("email",),
        )
        db.session.commit()
        bulk = db.session.execute(select(Lead).where(Lead.public_id == "bulk")).scalar_one()
        assert (bulk.email, bulk.name, bulk.status) == ("bulk@example.com", "Ann", "confirmed")
        assert (bulk.created_at, bulk.confirmed_at, bulk.last_confirmation_at) == (NOW, NOW, None)
        assert db.session.scalar(select(func.count()).where(Lead.public_id == "lost")) == 0
        # Byte for byte what the ORM wrote (SQLite keeps times as text).
        stored = db.session.execute(
            text("SELECT status, created_at, confirmed_at FROM lead ORDER BY id")
        ).all()
        assert stored[0] == stored[1]


def test_insert_rows_refuses_to_skip_a_python_side_default(app):
    with app.app_context():
        constants = _bulk_constants(NOW)
        del constants["created_at"]  # the model's default=utcnow would not run
        with pytest.raises(ValueError, match="created_at"):
            upsert.insert_rows(
                db.session.connection(),
                Lead.__table__,
                BULK_COLUMNS,
                [("p", "p@example.com", None, None)],
                constants=constants,
            )
