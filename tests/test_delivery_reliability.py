"""The delivery worker as real processes against a real SMTP server (aiosmtpd):
crashes, several workers, a paused worker, unsubscribes racing the queue, and a
graceful stop. What is counted is what the SMTP server received."""

from __future__ import annotations

import random
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from app import create_app
from extensions import db
from models import Lead
from services.leads import subscriptions
from tests import delivery_procs as dp
from tests import procs

pytestmark = pytest.mark.slow


def _report(label: str, **figures) -> None:
    """Figures worth reading in the test output (-s, or -rA on failure)."""
    print(f"[{label}] " + " ".join(f"{k}={v}" for k, v in figures.items()))


def _duplicates(counts) -> int:
    return sum(n - 1 for n in counts.values() if n > 1)


def _stop_all(workers) -> None:
    for w in workers:
        w.signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        w.stop()


# --- 1. SIGKILL the worker 10 times while it drains 5,000 mails.

KILL_MAILS = 5000
KILLS = 10
# Each worker is killed after a random number of mails, at most this many:
# the kills together send at most half the queue (plus what goes between
# the count being seen and the kill), so it never drains before the last
# worker. A kill at a random moment instead sent it all on a fast machine,
# and the last worker was stopped before it was ready (exit -15).
MAILS_PER_KILL = KILL_MAILS // (2 * KILLS)


def test_sigkill_ten_times_loses_nothing_and_duplicates_at_most_one_per_kill(tmp_path):
    url = dp.sqlite_url(tmp_path)
    dp.prepare_schema(url)
    engine = dp.engine_for(url)
    dp.seed(engine, KILL_MAILS)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    started = time.monotonic()
    workers: list[procs.Proc] = []
    with dp.smtp_recorder(keep_messages=False) as smtp:
        # A 5 s lease: the batch a killed worker held comes back 5 s later.
        # The rate cap bounds what goes while the test is slow to see the count.
        env = dp.worker_env(
            tmp_path,
            url,
            smtp,
            WORKER_LEASE_SECONDS="5",
            MAIL_TIMEOUT="1",
            WORKER_RATE_PER_SECOND="1000",
            LOG_LEVEL="INFO",
        )
        try:
            in_flight_at_kill = []
            for k in range(KILLS):
                w = procs.worker_proc(env, tmp_path / f"worker-{k}.log").start()
                workers.append(w)
                # Kill only while it is really sending, after a random number of mails.
                target = smtp.count() + rng.randint(1, MAILS_PER_KILL)
                dp.wait_for(
                    lambda target=target: smtp.count() >= target,
                    30,
                    lambda w=w, k=k: (
                        f"worker {k} stopped sending; rows {dp.status_counts(engine)}; "
                        f"log:\n{w.log()}"
                    ),
                    interval=0.005,
                )
                w.kill()
                in_flight_at_kill.append(dp.status_counts(engine).get("sending", 0))
            received_at_last_kill = smtp.count()
            last = procs.worker_proc(env, tmp_path / "worker-final.log").start()
            workers.append(last)
            # Stopped only once it can stop gracefully, however soon the queue drains.
            procs.wait_worker_ready(last)
            dp.wait_for(
                lambda: dp.status_counts(engine) == {"sent": KILL_MAILS},
                90,
                lambda: (
                    f"rows: {dp.status_counts(engine)}; received {smtp.count()}; log:\n{last.log()}"
                ),
                interval=0.25,
            )
            assert last.stop() == 0, last.log()
        finally:
            _stop_all(workers)
        elapsed = time.monotonic() - started
        per_address = smtp.per_address()
    missing = [dp.address(i) for i in range(KILL_MAILS) if per_address[dp.address(i)] == 0]
    duplicates = _duplicates(per_address)
    with engine.connect() as conn:
        reclaimed = conn.execute(
            text("SELECT count(*) FROM outbox_message WHERE attempts > 1")
        ).scalar_one()
    engine.dispose()
    _report(
        "sigkill",
        seed=seed,
        kills=KILLS,
        duplicates=duplicates,
        rows_in_sending_at_each_kill=in_flight_at_kill,
        received_before_final_worker=received_at_last_kill,
        reclaimed_rows=reclaimed,
        seconds=f"{elapsed:.1f}",
    )
    assert not missing, f"{len(missing)} addresses got nothing, e.g. {missing[:5]}"
    assert set(per_address) <= {dp.address(i) for i in range(KILL_MAILS)}
    assert duplicates <= KILLS, f"{duplicates} duplicates for {KILLS} kills (seed {seed})"
    # The kills really interrupted claims: their rows were taken back.
    assert reclaimed > 0


# --- 2. Four worker processes, 10,000 rows, PostgreSQL.

PG_MAILS = 10_000
PG_WORKERS = 4


@pytest.mark.postgres
def test_four_workers_on_postgresql_send_each_row_exactly_once(tmp_path, fresh_pg_url):
    url = fresh_pg_url
    dp.prepare_schema(url)
    engine = dp.engine_for(url)
    dp.seed(engine, PG_MAILS)
    workers: list[procs.Proc] = []
    with dp.smtp_recorder(keep_messages=False) as smtp:
        env = dp.worker_env(
            tmp_path, url, smtp, WORKER_LEASE_SECONDS="60", MAIL_TIMEOUT="5", LOG_LEVEL="INFO"
        )
        try:
            started = time.monotonic()
            workers = [
                procs.worker_proc(env, tmp_path / f"pg-worker-{n}.log").start()
                for n in range(PG_WORKERS)
            ]
            dp.wait_for(
                lambda: dp.status_counts(engine) == {"sent": PG_MAILS},
                150,
                lambda: (
                    f"rows: {dp.status_counts(engine)}; received {smtp.count()}; "
                    f"logs:\n" + "\n".join(w.log(1500) for w in workers)
                ),
                interval=0.25,
            )
            elapsed = time.monotonic() - started
            # Give any late, duplicate send the time to arrive before counting.
            time.sleep(0.5)
            codes = [w.stop() for w in workers]
        finally:
            _stop_all(workers)
        per_address = smtp.per_address()
    with engine.connect() as conn:
        by_worker = dict(
            conn.execute(
                text("SELECT claimed_by, count(*) FROM outbox_message GROUP BY claimed_by")
            ).all()
        )
    engine.dispose()
    _report(
        "pg-4-workers",
        mails=PG_MAILS,
        seconds=f"{elapsed:.1f}",
        mails_per_s=f"{PG_MAILS / elapsed:.0f}",
        rows_per_worker=sorted(by_worker.values()),
    )
    assert codes == [0] * PG_WORKERS
    assert _duplicates(per_address) == 0, per_address.most_common(5)
    assert len(per_address) == PG_MAILS
    assert sum(per_address.values()) == PG_MAILS
    # Every process took part: the claims really were concurrent.
    assert len(by_worker) == PG_WORKERS, by_worker


# --- 2b. Several `flask worker --once` commands, as a process manager runs them.

PROCESS_MAILS = 600
PROCESSES = 3


def test_several_worker_commands_send_each_row_once(tmp_path, empty_db_url):
    url = empty_db_url
    dp.prepare_schema(url)
    engine = dp.engine_for(url)
    dp.seed(engine, PROCESS_MAILS)
    with dp.smtp_recorder(keep_messages=False) as smtp:
        # Slowed down so that no command drains the queue before the others start.
        env = dp.worker_env(
            tmp_path, url, smtp, WORKER_BATCH_SIZE="20", WORKER_RATE_PER_SECOND="150"
        )
        with ThreadPoolExecutor(PROCESSES) as pool:
            counts = list(pool.map(lambda _: procs.worker_once(env), range(PROCESSES)))
        per_address = smtp.per_address()
    with engine.connect() as conn:
        owners = conn.execute(
            text("SELECT count(DISTINCT claimed_by) FROM outbox_message")
        ).scalar_one()
    rows = dp.status_counts(engine)
    engine.dispose()
    assert sum(c["sent"] for c in counts) == PROCESS_MAILS, counts
    assert rows == {"sent": PROCESS_MAILS}
    assert len(per_address) == sum(per_address.values()) == PROCESS_MAILS
    assert owners == PROCESSES, "not every process took part"


# --- 3. A worker paused past its lease cannot finish the row another sent.


@pytest.mark.parametrize("late_reply", ["250 OK", "421 4.3.2 try later"])
def test_paused_worker_late_update_is_rejected(tmp_path, late_reply):
    url = dp.sqlite_url(tmp_path)
    dp.prepare_schema(url)
    engine = dp.engine_for(url)
    dp.seed(engine, 1)
    host = socket.gethostname()
    workers: list[procs.Proc] = []
    # The server holds the first mail's DATA reply until told: worker A is
    # then known to be mid-send, waiting for the server's answer.
    with dp.smtp_recorder(hold_first=True, first_reply=late_reply) as smtp:
        env = dp.worker_env(
            tmp_path,
            url,
            smtp,
            WORKER_LEASE_SECONDS="6",
            MAIL_TIMEOUT="2",
            WORKER_BACKOFF_BASE_SECONDS="0.05",
            LOG_LEVEL="INFO",
        )
        try:
            a = procs.worker_proc(env, tmp_path / "worker-a.log").start()
            workers.append(a)
            assert smtp.first_arrived.wait(30), f"worker A never sent; log:\n{a.log()}"
            a.signal(signal.SIGSTOP)
            row = dp.outbox_row(engine, 1)
            assert (row["status"], row["attempts"]) == ("sending", 1)
            assert row["claimed_by"] == f"{host}:{a.pid}"
            lease_until = _aware(row["lease_until"])
            dp.wait_for(lambda: datetime.now(UTC) > lease_until, 15, "lease did not run out", 0.05)

            b = procs.worker_proc(env, tmp_path / "worker-b.log").start()
            workers.append(b)
            dp.wait_for(
                lambda: dp.outbox_row(engine, 1)["status"] == "sent",
                30,
                lambda: f"B did not send the reclaimed row; log:\n{b.log()}",
            )
            sent_by_b = dp.outbox_row(engine, 1)
            assert sent_by_b["claimed_by"] == f"{host}:{b.pid}"
            assert sent_by_b["attempts"] == 2

            # Now A's server answers, and A wakes up to act on it.
            smtp.release_first.set()
            if late_reply.startswith("250"):
                dp.wait_for(lambda: smtp.count() == 2, 10, "A's mail was not accepted")
            a.signal(signal.SIGCONT)
            dp.wait_for(
                lambda: "batch claimed=1" in a.log(),
                15,
                lambda: f"A did not finish its batch; log:\n{a.log()}",
            )
            time.sleep(0.3)  # anything A would still write, it has written
            final = dp.outbox_row(engine, 1)
            assert final == sent_by_b, f"A's late update changed the row: {final}"
            assert a.alive(), f"A died after its lease was lost:\n{a.log()}"
            # A knows and says it: its batch line counts the lost lease.
            assert "lost=1" in a.log() and "lease lost" in a.log(), a.log()
            assert a.stop() == 0 and b.stop() == 0
        finally:
            _stop_all(workers)
        received = smtp.count()
    engine.dispose()
    _report("sigstop", late_reply=late_reply, received=received, final=final)
    # B's send, plus A's if the server accepted it: the one duplicate a pause
    # past the lease can cause, never more.
    assert received == (2 if late_reply.startswith("250") else 1)


def _aware(value) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- 4. 100 unsubscribes while 1,000 mails drain.

UNSUB_MAILS = 1000
UNSUBSCRIBES = 100
# What a send-time check cannot close: the few milliseconds between the
# worker reading the lead and the server receiving the mail. An unsubscribe
# that commits inside that window loses the race; anything later is a bug.
CHECK_TO_SEND_GRACE = 0.1


# Where every row of the drain ends.
FINISHED = {"sent", "skipped", "cancelled"}


def test_unsubscribes_while_draining_stop_mail_at_once(tmp_path):
    url = dp.sqlite_url(tmp_path)
    dp.prepare_schema(url)
    engine = dp.engine_for(url)
    dp.seed(engine, UNSUB_MAILS)
    rng = random.Random()
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "x"})
    # address -> (monotonic time the commit began, time it returned)
    unsubscribed: dict[str, tuple[float, float]] = {}
    picked_while_claimed = 0
    w = None
    with dp.smtp_recorder(keep_messages=False) as smtp:
        env = dp.worker_env(
            tmp_path,
            url,
            smtp,
            WORKER_LEASE_SECONDS="30",
            # Slow enough that the unsubscribes happen inside the drain.
            WORKER_RATE_PER_SECOND="200",
            LOG_LEVEL="INFO",
        )
        try:
            w = procs.worker_proc(env, tmp_path / "worker.log").start()
            dp.wait_for(lambda: smtp.count() > 0, 30, lambda: f"nothing sent:\n{w.log()}")
            with app.app_context():
                while len(unsubscribed) < UNSUBSCRIBES:
                    # Half of the picks are rows the worker has claimed already
                    # (their batch is being sent), half rows still waiting.
                    status = rng.choice(["sending", "queued"])
                    candidates = (
                        db.session.execute(
                            text(
                                "SELECT lead_id FROM outbox_message WHERE status = :s "
                                "ORDER BY id LIMIT 60"
                            ),
                            {"s": status},
                        )
                        .scalars()
                        .all()
                    )
                    candidates = [c for c in candidates if dp.address(c - 1) not in unsubscribed]
                    db.session.rollback()
                    if not candidates:
                        if dp.status_counts(engine).keys() <= FINISHED:
                            break
                        time.sleep(0.005)
                        continue
                    lead = db.session.get(Lead, rng.choice(candidates))
                    t_begin = time.monotonic()
                    subscriptions.unsubscribe(lead, "link", subscriptions.Evidence())
                    db.session.commit()
                    unsubscribed[lead.email] = (t_begin, time.monotonic())
                    picked_while_claimed += status == "sending"
                    time.sleep(0.02)
                db.session.remove()
            unsubscribed_during_drain = len(unsubscribed)
            dp.wait_for(
                lambda: dp.status_counts(engine).keys() <= FINISHED,
                60,
                lambda: f"rows: {dp.status_counts(engine)}; log:\n{w.log()}",
                interval=0.1,
            )
            assert w.stop() == 0
        finally:
            if w is not None:
                w.stop()
        receipts = list(smtp.receipts)
    with app.app_context():
        db.engine.dispose()
    with engine.connect() as conn:
        rows = {
            dp.address(lead_id - 1): (status, error)
            for lead_id, status, error in conn.execute(
                text("SELECT lead_id, status, last_error FROM outbox_message")
            )
        }
    engine.dispose()

    late, raced = [], []
    for at, rcpt, _ in receipts:
        if rcpt in unsubscribed:
            begin, end = unsubscribed[rcpt]
            if at > end + CHECK_TO_SEND_GRACE:
                late.append((rcpt, round(at - end, 3)))
            elif at > begin:
                raced.append((rcpt, round(at - begin, 4)))
    received = {rcpt for _, rcpt, _ in receipts}
    # A row the worker held is skipped at send time; one still waiting is
    # cancelled by the unsubscribe itself.
    skipped = {a for a, (s, _) in rows.items() if s in ("skipped", "cancelled")}
    _report(
        "unsubscribe-race",
        unsubscribed=len(unsubscribed),
        picked_while_claimed=picked_while_claimed,
        skipped=sum(s == "skipped" for s, _ in rows.values()),
        cancelled=sum(s == "cancelled" for s, _ in rows.values()),
        sent_before_unsubscribe=len(received & set(unsubscribed)) - len(raced),
        lost_race_within_ms=[r[1] for r in raced],
    )
    assert unsubscribed_during_drain == UNSUBSCRIBES, "the drain ended before 100 unsubscribes"
    assert not late, f"mail received after the unsubscribe had committed: {late}"
    # Exactly the unsubscribed leads whose mail had not gone are skipped or
    # cancelled, with a reason.
    assert skipped == set(unsubscribed) - received
    assert all(rows[a][1] == "lead is unsubscribed" for a in skipped)
    assert len(skipped) >= UNSUBSCRIBES // 2, "too few unsubscribes beat their mail"
    assert len(receipts) == UNSUB_MAILS - len(skipped)
    assert len(received) == len(receipts), "an address got its mail twice"


# --- 5. SIGTERM mid-drain: exits 0 promptly, nothing left in 'sending'.


@pytest.mark.parametrize(
    ("signum", "connections"),
    [(signal.SIGTERM, 1), (signal.SIGTERM, 4), (signal.SIGINT, 1)],
    ids=["SIGTERM-1", "SIGTERM-4", "SIGINT-1"],
)
def test_sigterm_stops_gracefully_and_releases_claims(tmp_path, signum, connections):
    url = dp.sqlite_url(tmp_path)
    dp.prepare_schema(url)
    engine = dp.engine_for(url)
    n = 2000
    dp.seed(engine, n)
    w = None
    with dp.smtp_recorder(keep_messages=False) as smtp:
        env = dp.worker_env(
            tmp_path,
            url,
            smtp,
            WORKER_CONNECTIONS=str(connections),
            WORKER_RATE_PER_SECOND="300",
            WORKER_LEASE_SECONDS="60",
            LOG_LEVEL="INFO",
        )
        try:
            w = procs.worker_proc(env, tmp_path / "worker.log").start()
            dp.wait_for(lambda: smtp.count() >= 200, 30, lambda: f"slow start:\n{w.log()}")
            claimed = dp.wait_for(
                lambda: dp.status_counts(engine).get("sending", 0), 5, "no claim in flight", 0.005
            )
            t0 = time.monotonic()
            w.popen.send_signal(signum)
            code = w.popen.wait(timeout=10)
            stop_seconds = time.monotonic() - t0
        finally:
            if w is not None:
                w.stop()
        time.sleep(0.2)  # a mail in flight at exit would have arrived by now
        per_address = smtp.per_address()
    counts = dp.status_counts(engine)
    engine.dispose()
    _report(
        "graceful-stop",
        signal=signal.Signals(signum).name,
        connections=connections,
        exit=code,
        stop_seconds=f"{stop_seconds:.2f}",
        claimed_at_signal=claimed,
        rows=counts,
    )
    assert code == 0, w.log()
    assert stop_seconds < 5
    assert claimed > 0, "nothing was claimed when the signal came: the test proved nothing"
    assert "sending" not in counts, f"claims were not released: {counts}\n{w.log()}"
    # Every mail the server got is recorded as sent, and no other.
    assert counts.get("sent", 0) == sum(per_address.values()) == len(per_address)
    assert counts.get("sent", 0) + counts.get("queued", 0) == n
