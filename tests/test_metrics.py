"""GET /metrics (Prometheus): who may read it, what it counts, and that the
counts of several gunicorn workers add up; the worker's own --metrics-port.

Every exposition is read with prometheus_client's own parser."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, insert, select

from config import Config
from extensions import db
from models import MailKind, OutboxMessage, OutboxStatus
from services.delivery.outbox_report import QUEUE_STATUSES
from services.leads import signup, subscriptions
from tests import delivery_procs as dp
from tests import procs
from tests.bounce_mail import BOUNCE_ADDRESS, bounce_receiver, deliver, out_of_office
from tests.helpers import ARTICLE_PATH, T0, Visitor, base_config, confirm_address
from tests.helpers import signup as sign_up_form

SOURCE = ARTICLE_PATH.lstrip("/")
TOKEN = "a-long-enough-metrics-token"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition: (name, labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def scrape(client, **kwargs) -> dict:
    r = client.get("/metrics", **kwargs)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return samples(r.get_data(as_text=True))


@pytest.fixture
def app_config(app_config):
    return {**app_config, "METRICS_TOKEN": TOKEN}


# --- Who may read it


def test_loopback_and_the_token_may_scrape_anyone_else_gets_403(client):
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    outside = {"REMOTE_ADDR": "203.0.113.7"}
    assert client.get("/metrics", environ_base=outside).status_code == 403
    wrong = {"Authorization": "Bearer not-the-metrics-token"}
    assert client.get("/metrics", environ_base=outside, headers=wrong).status_code == 403
    basic = {"Authorization": f"Basic {TOKEN}"}
    assert client.get("/metrics", environ_base=outside, headers=basic).status_code == 403
    good = {"Authorization": f"Bearer {TOKEN}"}
    r = client.get("/metrics", environ_base=outside, headers=good)
    assert r.status_code == 200
    assert "leads_outbox_messages" in r.get_data(as_text=True)
    assert r.headers["Cache-Control"] == "no-store"


def test_allowed_networks_are_a_setting(app, app_config, tmp_path):
    from app import create_app

    networks = Config.from_env(str(tmp_path), {"METRICS_ALLOWED_IPS": "10.1.0.0/16, 2001:db8::/32"})
    other = create_app({**app_config, "METRICS_ALLOWED_IPS": networks["METRICS_ALLOWED_IPS"]})
    client = other.test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "2001:db8::5"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.2.0.1"}).status_code == 403
    # Loopback is no longer in the list.
    assert client.get("/metrics").status_code == 403


# --- What it says


def test_outbox_gauges_match_the_database(app, client, frozen):
    """Rows by status and the age of the oldest due row, read at scrape time
    (on SQLite and PostgreSQL, as every test with the app fixture)."""
    rows = [
        # Due 5 minutes ago and 30 s ago; one not due for an hour.
        (OutboxStatus.QUEUED, T0 - timedelta(minutes=5)),
        (OutboxStatus.QUEUED, T0 - timedelta(seconds=30)),
        (OutboxStatus.QUEUED, T0 + timedelta(hours=1)),
        (OutboxStatus.SENDING, T0 - timedelta(hours=2)),  # being sent: not waiting
        (OutboxStatus.SENT, T0 - timedelta(days=1)),
        (OutboxStatus.SENT, T0 - timedelta(days=1)),
        (OutboxStatus.FAILED, T0 - timedelta(days=2)),
    ]
    with app.app_context():
        db.session.execute(
            insert(OutboxMessage),
            [
                {
                    "kind": MailKind.WELCOME,
                    "status": status,
                    "send_after": due,
                    "created_at": T0,
                    "to_email": "someone@example.com",
                }
                for status, due in rows
            ],
        )
        db.session.commit()
        in_db = dict(
            db.session.execute(
                select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
            ).all()
        )
    found = scrape(client)
    for status in QUEUE_STATUSES:
        assert value(found, "leads_outbox_messages", status=status.value) == in_db.get(status, 0)
    # The history (sent, skipped, cancelled) is left to the counters: it
    # grows with every mail, and counting it would cost a scan.
    assert ("leads_outbox_messages", frozenset({("status", "sent")})) not in found
    assert value(found, "leads_outbox_messages", status="queued") == 3
    assert value(found, "leads_outbox_oldest_due_seconds") == 300.0
    frozen.advance(60)
    assert value(scrape(client), "leads_outbox_oldest_due_seconds") == 360.0


def test_without_the_database_the_scrape_still_has_the_counters(tmp_path):
    from app import create_app

    broken = create_app(
        {**base_config(tmp_path), "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'no.db'}"}
    )  # no tables: every query fails
    r = broken.test_client().get("/metrics")
    assert r.status_code == 200
    names = {family.name for family in text_string_to_metric_families(r.get_data(as_text=True))}
    assert "leads_signups" in names
    assert "leads_outbox_messages" not in names


def test_signups_confirmations_and_unsubscribes_are_counted_by_source(app, client):
    before = scrape(client)
    assert sign_up_form(client, "ada@example.com").status_code == 303
    confirm_address(app, client, "ada@example.com")
    with app.app_context():
        token = subscriptions.unsubscribe_token(subscriptions.lead_by_email("ada@example.com"))
    one_click = {"List-Unsubscribe": "One-Click"}
    assert client.post(f"/unsubscribe/{token}", data=one_click).status_code == 200
    assert client.post(f"/unsubscribe/{token}", data=one_click).status_code == 200  # not again
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("leads_signups_total", source=SOURCE) == 1
    assert grew("leads_confirmations_total", source=SOURCE) == 1
    assert grew("leads_unsubscribes_total", source=SOURCE, channel="one-click") == 1
    # The article's cached page and the signup post, by their rule's endpoint.
    assert grew("leads_http_request_duration_seconds_count", endpoint="articles.article") >= 1
    assert (
        grew("leads_http_request_duration_seconds_count", endpoint="subscriptions.subscribe") == 1
    )


def _signup_request(email: str) -> signup.SignupRequest:
    return signup.SignupRequest(
        email=email, topics=["cspo-classes"], placement="end", source_slug=SOURCE
    )


def test_a_rolled_back_signup_is_not_counted(app, client):
    before = value(scrape(client), "leads_signups_total", source=SOURCE)
    with app.test_request_context():
        signup.subscribe(_signup_request("grace@example.com"), subscriptions.Evidence())
        db.session.rollback()
    assert value(scrape(client), "leads_signups_total", source=SOURCE) == before
    with app.test_request_context():
        signup.subscribe(_signup_request("grace@example.com"), subscriptions.Evidence())
        db.session.commit()
    assert value(scrape(client), "leads_signups_total", source=SOURCE) == before + 1


def test_a_signup_in_a_rolled_back_savepoint_is_not_counted(app, client):
    before = value(scrape(client), "leads_signups_total", source=SOURCE)
    with app.test_request_context():
        outer = signup.subscribe(_signup_request("hopper@example.com"), subscriptions.Evidence())
        savepoint = db.session.begin_nested()
        signup.subscribe(_signup_request("lovelace@example.com"), subscriptions.Evidence())
        savepoint.rollback()
        kept = db.session.begin_nested()
        signup.subscribe(_signup_request("noether@example.com"), subscriptions.Evidence())
        kept.commit()
        # Released, not yet committed: nothing counted so far.
        assert value(scrape(client), "leads_signups_total", source=SOURCE) == before
        db.session.commit()
    assert outer == signup.SignupOutcome.CONFIRMATION_QUEUED
    assert value(scrape(client), "leads_signups_total", source=SOURCE) == before + 2


def test_a_source_a_visitor_made_up_is_not_a_label(app, client):
    """An embed's ?source= is the visitor's to choose: counted as "embed"."""
    made_up = "x" * 20
    before = scrape(client)
    sign_up_form(client, "lin@example.com", path=f"/embed/signup?source={made_up}")
    after = scrape(client)
    assert not any(made_up in str(labels) for _, labels in after)
    assert value(after, "leads_signups_total", source="embed") == (
        value(before, "leads_signups_total", source="embed") + 1
    )


# --- Real processes


def _get(url: str, headers: dict | None = None) -> str:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as r:
        return r.read().decode()


WEB_WORKERS = 3
SIGNUPS = 12


def _read_until_every_worker_answered(url: str, counts_dir) -> int:
    """Read the article, several at once (a sync worker takes one at a
    time), until each worker has written its own file (they boot one after
    the other); how many reads it took."""
    reads = 0
    with ThreadPoolExecutor(6) as pool:
        deadline = time.monotonic() + 60
        while len(list(counts_dir.glob("histogram_*.db"))) < WEB_WORKERS:
            assert time.monotonic() < deadline, "the requests never reached every worker"
            pages = list(pool.map(_get, [url + ARTICLE_PATH] * 12))
            assert all("<form" in page for page in pages)
            reads += len(pages)
    return reads


def test_counts_add_up_across_gunicorn_workers(tmp_path):
    """Requests on fresh connections spread over three workers; one scrape
    (from any worker) counts them all, those of a worker killed since
    included. A new master starts from zero."""
    url = dp.sqlite_url(tmp_path)
    counts_dir = tmp_path / "prometheus"
    env = procs.app_env(tmp_path, url, FORM_MIN_SECONDS=0, PROMETHEUS_MULTIPROC_DIR=counts_dir)
    procs.flask_db_upgrade(env)
    for run in range(2):
        with procs.gunicorn(env, workers=WEB_WORKERS) as server:
            reads = _read_until_every_worker_answered(server.url, counts_dir)
            if run == 0:  # a worker dies; the master forks another
                _kill_one_worker(server)
            for i in range(SIGNUPS):
                visitor = Visitor(server.url)
                visitor.read_article()
                assert visitor.sign_up(f"run{run}-{i}@example.com") == 303
            found = samples(_get(server.url + "/metrics"))
        reads += SIGNUPS  # each visitor read the article first
        latency = "leads_http_request_duration_seconds_count"
        assert value(found, latency, endpoint="articles.article") == reads
        assert value(found, "leads_signups_total", source=SOURCE) == SIGNUPS
        in_db = dp.status_counts(dp.engine_for(url))
        assert value(found, "leads_outbox_messages", status="queued") == in_db["queued"]


def _workers(master_pid: int) -> set[int]:
    path = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    return {int(pid) for pid in path.read_text().split()}


def _kill_one_worker(server: procs.Server) -> None:
    before = _workers(server.pid)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    dp.wait_for(
        lambda: victim not in (now := _workers(server.pid)) and len(now) == WEB_WORKERS,
        60,
        f"gunicorn did not replace worker {victim}:\n{server.log()}",
    )
    server.wait_healthy()


def test_the_worker_serves_its_own_metrics_while_it_sends(tmp_path, smtp_server):
    url = dp.sqlite_url(tmp_path)
    dp.prepare_schema(url)
    dp.seed(dp.engine_for(url), 5)
    smtp_server.replies = ["550 5.1.1 no such user", "451 4.3.0 try again later"]
    port = procs.free_port()
    env = dp.worker_env(tmp_path, url, smtp_server)
    proc = procs.worker_proc(env, tmp_path / "worker.log", "--metrics-port", str(port))
    try:
        proc.start()
        metrics_url = f"http://127.0.0.1:{port}/metrics"

        def sent() -> dict | None:
            found = samples(_get(metrics_url))
            done = value(found, "leads_mail_sent_total", kind="welcome") == 3
            return found if done else None

        proc.wait_until(lambda: sent() is not None, "the worker's metrics", 60)
        found = samples(_get(metrics_url))
    finally:
        proc.stop()
    assert len(smtp_server.messages) == 3
    assert value(found, "leads_mail_sent_total", kind="welcome") == 3
    assert value(found, "leads_smtp_errors_total", error_class="5xx") == 1
    assert value(found, "leads_smtp_errors_total", error_class="4xx") == 1
    assert value(found, "leads_smtp_errors_total", error_class="connection") == 0


def test_the_bounce_receiver_serves_its_own_metrics(tmp_path):
    url = dp.sqlite_url(tmp_path)
    env = procs.app_env(tmp_path, url, MAIL_BOUNCE_ADDRESS=BOUNCE_ADDRESS)
    procs.flask_db_upgrade(env)
    port = procs.free_port()
    log = tmp_path / "bounces.log"
    with bounce_receiver(env, log, "--metrics-port", str(port)) as receiver:
        code, _ = deliver(receiver.port, BOUNCE_ADDRESS, out_of_office(to=BOUNCE_ADDRESS))
        assert code == 250
        found = samples(_get(f"http://127.0.0.1:{port}/metrics"))
    assert value(found, "leads_inbound_events_total", kind="auto_reply") == 1
    assert value(found, "leads_inbound_events_total", kind="complaint") == 0
