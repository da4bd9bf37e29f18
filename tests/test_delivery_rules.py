"""What the SMTP server says decides what happens to a row; the follow-up
sequence on a controllable clock; what operators see.

The reply rules run `flask worker` as a real process against aiosmtpd (or a
socket that never answers); the sequence runs the Worker in-process so the
clock can move, still sending through a real SMTP server.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from extensions import db
from models import (
    Lead,
    LeadStatus,
    OutboxMessage,
    OutboxStatus,
    Suppression,
    TrainingClass,
    email_hash,
)
from services.leads import subscriptions
from tests import delivery_procs as dp
from tests import procs
from tests.helpers import T0, confirm_address, drain, signup, smtp_settings

# --- Reply rules, against a real worker process.


@pytest.fixture
def queue(tmp_path):
    """An SQLite outbox with n confirmed leads and one welcome row each."""
    url = dp.sqlite_url(tmp_path)
    dp.prepare_schema(url)
    engine = dp.engine_for(url)
    yield url, engine
    engine.dispose()


@pytest.fixture
def running():
    """Start workers with running(env, log); all are stopped at the end."""
    started: list[procs.Proc] = []

    def start(env, log_path):
        w = procs.worker_proc(env, log_path).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def _watch(engine, row_id: int, until, timeout: float, proc) -> list[tuple]:
    """Poll a row every 10 ms until until(row); the distinct states seen."""
    seen: list[tuple] = []
    deadline = time.monotonic() + timeout
    while True:
        row = dp.outbox_row(engine, row_id)
        state = (row["status"], row["attempts"], row["last_error"])
        if not seen or seen[-1] != state:
            seen.append(state)
        if until(row):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"row {row_id} stuck; states {seen}\nlog:\n{proc.log()}")
        time.sleep(0.01)


@pytest.mark.slow
def test_421_twice_then_250_is_delivered_after_two_retries(tmp_path, queue, running):
    url, engine = queue
    dp.seed(engine, 1)
    with dp.smtp_recorder() as smtp:
        smtp.replies = ["421 4.7.0 try later", "421 4.7.0 try later"]
        env = dp.worker_env(tmp_path, url, smtp, WORKER_BACKOFF_BASE_SECONDS="0.3")
        w = running(env, tmp_path / "worker.log")
        seen = _watch(engine, 1, lambda r: r["status"] == "sent", 30, w)
        row = dp.outbox_row(engine, 1)
        assert (row["attempts"], row["last_error"]) == (3, None)
        assert smtp.data_calls == 3
        assert smtp.per_address() == {dp.address(0): 1}
        # Between tries the row waited, queued, with the server's words.
        assert any(s == "queued" and e and e.startswith("421") for s, _, e in seen), seen
        gaps = [b - a for a, b in zip(smtp.data_times, smtp.data_times[1:], strict=False)]
        # Backoff: attempt n waits uniform(base·2^(n-1) / 2, base·2^(n-1)).
        assert gaps[0] >= 0.15 and gaps[1] >= 0.3, gaps


@pytest.mark.slow
def test_4xx_gives_up_after_max_attempts(tmp_path, queue, running):
    url, engine = queue
    dp.seed(engine, 1)
    with dp.smtp_recorder() as smtp:
        smtp.replies = ["451 4.3.0 local problem"] * 10
        env = dp.worker_env(
            tmp_path, url, smtp, WORKER_BACKOFF_BASE_SECONDS="0.05", MAIL_MAX_ATTEMPTS="3"
        )
        w = running(env, tmp_path / "worker.log")
        _watch(engine, 1, lambda r: r["status"] == "failed", 30, w)
        time.sleep(0.5)
        row = dp.outbox_row(engine, 1)
        assert row["attempts"] == 3 and smtp.data_calls == 3
        assert row["last_error"].startswith("gave up after 3 attempts: 451")
        assert smtp.count() == 0


@pytest.mark.slow
@pytest.mark.parametrize("where", ["DATA", "RCPT"])
def test_5xx_fails_at_once_suppresses_and_later_mail_is_skipped(tmp_path, queue, running, where):
    url, engine = queue
    dp.seed(engine, 2)
    bounced = dp.address(0)
    with dp.smtp_recorder() as smtp:
        if where == "DATA":
            smtp.replies = ["550 5.1.1 no such user"]
        else:
            smtp.refuse_rcpt[bounced] = "550 5.1.1 no such user"
        env = dp.worker_env(tmp_path, url, smtp, WORKER_BACKOFF_BASE_SECONDS="0.05")
        w = running(env, tmp_path / "worker.log")
        _watch(engine, 1, lambda r: r["status"] == "failed", 30, w)
        dp.wait_for(lambda: dp.outbox_row(engine, 2)["status"] == "sent", 10, w.log)
        tries = smtp.data_calls if where == "DATA" else smtp.rcpt_calls
        time.sleep(1.0)  # 20 backoff periods: a retry would have come by now
        row = dp.outbox_row(engine, 1)
        assert row["status"] == "failed" and row["attempts"] == 1
        assert "550" in row["last_error"]
        assert (smtp.data_calls if where == "DATA" else smtp.rcpt_calls) == tries
        assert smtp.per_address() == {dp.address(1): 1}
        with engine.connect() as conn:
            suppression = conn.execute(select(Suppression.__table__)).mappings().all()
        assert [(s["email_hash"], s["reason"]) for s in suppression] == [
            (email_hash(bounced), "hard_bounce")
        ]
        assert "550" in suppression[0]["detail"]

        # A later mail to the bounced address is not even attempted.
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(
                insert(OutboxMessage.__table__).values(
                    id=3, kind="welcome", lead_id=1, status="queued",
                    send_after=now, created_at=now, attempts=0,
                )
            )  # fmt: skip
        _watch(engine, 3, lambda r: r["status"] == "skipped", 10, w)
        assert dp.outbox_row(engine, 3)["last_error"] == "address suppressed (hard_bounce)"
        assert smtp.per_address() == {dp.address(1): 1}


@pytest.mark.slow
def test_server_that_never_answers_times_out_and_other_mail_keeps_flowing(tmp_path, queue, running):
    url, engine = queue
    n = 5
    dp.seed(engine, n)
    with (
        dp.smtp_recorder() as smtp,
        # The first connection is accepted and never answered; later ones
        # reach the real server.
        dp.SilentFirstProxy((smtp.host, smtp.port)) as silent,
    ):
        env = dp.worker_env(
            tmp_path, url, silent, MAIL_TIMEOUT="1", WORKER_BACKOFF_BASE_SECONDS="3"
        )
        started = time.monotonic()
        w = running(env, tmp_path / "worker.log")
        dp.wait_for(
            lambda: all(dp.outbox_row(engine, i)["status"] == "sent" for i in range(2, n + 1)),
            20,
            lambda: f"other rows did not go: {dp.status_counts(engine)}\n{w.log()}",
        )
        others_done = time.monotonic() - started
        first = dp.outbox_row(engine, 1)
        # The hung row went back to the queue, with the reason, for a retry later.
        assert first["status"] == "queued", first
        assert first["attempts"] == 1
        assert "timed out" in first["last_error"], first["last_error"]
        _watch(engine, 1, lambda r: r["status"] == "sent", 20, w)
        assert dp.outbox_row(engine, 1)["attempts"] == 2
        assert smtp.per_address() == {dp.address(i): 1 for i in range(n)}
        assert silent.accepted >= 2
    print(f"[silent-server] other rows sent {others_done:.1f}s after the worker started")


@pytest.mark.slow
def test_rejected_smtp_login_neither_fails_the_mail_nor_suppresses_the_reader(
    tmp_path, queue, running
):
    """535 is about our credentials, not the recipient: a wrong password must
    not fail the queue for good, nor put every reader on the suppression list."""
    url, engine = queue
    dp.seed(engine, 3)
    with dp.smtp_recorder(refuse_logins=True) as smtp:
        env = dp.worker_env(
            tmp_path,
            url,
            smtp,
            MAIL_USERNAME="app",
            MAIL_PASSWORD="wrong",
            WORKER_BACKOFF_BASE_SECONDS="60",
        )
        w = running(env, tmp_path / "worker.log")
        dp.wait_for(
            lambda: all(dp.outbox_row(engine, i)["last_error"] for i in (1, 2, 3)),
            20,
            lambda: f"{dp.status_counts(engine)}\n{w.log()}",
        )
        rows = [dp.outbox_row(engine, i) for i in (1, 2, 3)]
        with engine.connect() as conn:
            suppressed = conn.execute(select(Suppression.__table__)).all()
    assert [r["status"] for r in rows] == ["queued"] * 3, rows
    assert all("535" in r["last_error"] for r in rows), rows
    assert suppressed == []
    assert smtp.count() == 0


@pytest.mark.slow
def test_worker_refuses_a_lease_too_short_to_send_in(tmp_path, queue):
    """A lease shorter than one send's worst case would make the worker claim
    and release forever without sending; it must say so and stop instead."""
    url, engine = queue
    dp.seed(engine, 1)
    with dp.smtp_recorder() as smtp:
        env = dp.worker_env(tmp_path, url, smtp, WORKER_LEASE_SECONDS="60", MAIL_TIMEOUT="30")
        result = procs.flask(env, "worker", "--once", timeout=10, check=False)
    assert result.returncode != 0, result.stdout
    assert "WORKER_LEASE_SECONDS" in result.stderr
    assert dp.status_counts(engine) == {"queued": 1}


# --- The follow-up sequence, on a clock the test moves.


@pytest.fixture
def app_config(app_config, smtp_server):
    return {
        **app_config,
        **smtp_settings(smtp_server),
        "CONFIRM_REMINDER_HOURS": 24,
        "CLASSES_FOLLOWUP_DAYS": 3,
    }


def kinds_to(smtp, address: str) -> list[str]:
    return [m["X-Mail-Kind"] for _, rcpts, m in smtp.messages if address in rcpts]


def rows_of(app, address: str, kind: str) -> list[OutboxMessage]:
    with app.app_context():
        return list(
            db.session.execute(
                select(OutboxMessage)
                .join(Lead)
                .where(Lead.email == address, OutboxMessage.kind == kind)
                .order_by(OutboxMessage.id)
            ).scalars()
        )


def test_confirm_reminder_goes_once_and_only_to_pending_leads(app, client, smtp_server, frozen):
    pending, confirmer = "pending@example.com", "confirmer@example.com"
    assert signup(client, pending).status_code == 303
    assert signup(client, confirmer).status_code == 303
    assert drain(app)["sent"] == 2  # the two confirmations
    frozen.set(T0 + timedelta(hours=1))
    confirm_address(app, client, confirmer)
    assert drain(app)["sent"] == 1  # the welcome

    frozen.set(T0 + timedelta(hours=23, minutes=59))
    assert drain(app) == {"sent": 0, "skipped": 0, "failed": 0}
    assert [r.status for r in rows_of(app, pending, "confirm_reminder")] == ["queued"]

    frozen.set(T0 + timedelta(hours=24))
    assert drain(app) == {"sent": 1, "skipped": 0, "failed": 0}
    assert kinds_to(smtp_server, pending) == ["confirmation", "confirm_reminder"]
    assert kinds_to(smtp_server, confirmer) == ["confirmation", "welcome"]
    # Cancelled when the lead confirmed, in the same transaction: never
    # queued to be skipped.
    (cancelled,) = rows_of(app, confirmer, "confirm_reminder")
    assert cancelled.status == OutboxStatus.CANCELLED
    assert cancelled.last_error == "lead is confirmed, not pending"
    reminder = smtp_server.messages[-1][2]
    assert "/confirm/" in reminder.get_body(("plain",)).get_content()

    # The same address signs up again the next day: a new confirmation, but
    # never a second reminder, however long we wait.
    frozen.set(T0 + timedelta(hours=25))
    assert signup(client, pending).status_code == 303
    assert drain(app)["sent"] == 1
    for hours in (49, 24 * 8):
        frozen.set(T0 + timedelta(hours=hours))
        drain(app)
    assert kinds_to(smtp_server, pending) == [
        "confirmation",
        "confirm_reminder",
        "confirmation",
    ]
    assert len(rows_of(app, pending, "confirm_reminder")) == 1


def followup(app, address: str) -> tuple[OutboxStatus, str | None]:
    (row,) = rows_of(app, address, "classes_followup")
    return row.status, row.last_error


def test_classes_followup_is_rendered_at_send_time_and_skipped_with_a_reason(
    app, client, smtp_server, frozen
):
    none_yet, wants, dropped = "a@example.com", "b@example.com", "c@example.com"
    for address in (none_yet, wants, dropped):
        assert signup(client, address, topics=("cspo-classes", "newsletter")).status_code == 303
    drain(app)
    # Confirmed an hour apart: their follow-ups fall due an hour apart.
    for hour, address in enumerate((none_yet, wants, dropped), start=1):
        frozen.set(T0 + timedelta(hours=hour))
        confirm_address(app, client, address)
    drain(app)
    queued = (OutboxStatus.QUEUED, None)

    # 3 days after the first confirmation there are no classes at all.
    frozen.set(T0 + timedelta(days=3, hours=1, minutes=-1))
    drain(app)
    assert [followup(app, a) for a in (none_yet, wants, dropped)] == [queued] * 3
    frozen.set(T0 + timedelta(days=3, hours=1))
    drain(app)
    assert followup(app, none_yet) == (OutboxStatus.SKIPPED, "no upcoming classes")
    assert [followup(app, a) for a in (wants, dropped)] == [queued] * 2

    # A class is scheduled; the third lead drops the topic meanwhile.
    with app.app_context():
        db.session.add(
            TrainingClass(
                title="CSPO Spring Cohort (online)",
                starts_at=frozen.now + timedelta(days=10),
                ends_at=frozen.now + timedelta(days=11),
            )
        )
        lead = subscriptions.lead_by_email(dropped)
        subscriptions.update_topics(lead, ["newsletter"], subscriptions.Evidence())
        db.session.commit()

    frozen.set(T0 + timedelta(days=3, hours=3))
    drain(app)
    assert followup(app, wants)[0] == OutboxStatus.SENT
    assert followup(app, dropped) == (OutboxStatus.SKIPPED, "lead does not want cspo-classes")
    assert followup(app, none_yet) == (OutboxStatus.SKIPPED, "no upcoming classes")
    (mail,) = [m for _, r, m in smtp_server.messages if m["X-Mail-Kind"] == "classes_followup"]
    assert mail["To"] == wants
    assert "CSPO Spring Cohort (online)" in mail.get_body(("plain",)).get_content()
    assert "CSPO Spring Cohort (online)" in mail.get_body(("html",)).get_content()
    assert mail["List-Unsubscribe"]
    with app.app_context():
        assert (
            db.session.execute(select(Lead.status).where(Lead.email == dropped)).scalar_one()
            == LeadStatus.CONFIRMED
        )


# --- What operators see.


def test_outbox_status_and_healthz_show_the_queue(app, runner, client, frozen):
    now = frozen.now

    def row(status, *, due=now, error=None, n=1):
        return [
            {
                "kind": "welcome",
                "status": status,
                "send_after": due,
                "created_at": now - timedelta(days=1),
                "attempts": 1,
                "last_error": error,
            }
        ] * n

    with app.app_context():
        db.session.execute(
            insert(OutboxMessage),
            [
                *row("queued", due=now - timedelta(hours=2)),
                *row("queued", due=now - timedelta(minutes=5)),
                *row("queued", due=now + timedelta(hours=1)),  # not due: not "oldest due"
                *row("sending"),
                *row("sent", n=3),
                *row("failed", error="550 5.1.1 no such user", n=2),
                *row("failed", error="gave up after 8 attempts: 421 try later"),
                *row("skipped", error="lead is unsubscribed"),
            ],
        )
        db.session.commit()

    result = runner.invoke(args=["outbox", "status"])
    assert result.exit_code == 0, result.output
    out = result.output
    counts = {
        line.split(":")[0].strip(): int(line.split(":")[1])
        for line in out.splitlines()
        if line.strip().split(":")[0] in {s.value for s in OutboxStatus}
    }
    expected = dict.fromkeys((s.value for s in OutboxStatus), 0)
    expected.update(queued=3, sending=1, sent=3, failed=3, skipped=1)
    assert counts == expected
    assert "oldest due: 7200s ago" in out
    assert "recent errors:" in out
    assert "2 × 550 5.1.1 no such user" in out
    assert "1 × gave up after 8 attempts: 421 try later" in out
    # A skip is the send-time check's verdict, not a delivery error.
    assert "lead is unsubscribed" not in out.split("recent errors:")[1]

    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok", "queue_depth": 4}
