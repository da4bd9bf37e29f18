"""Two real `flask worker --once` processes on PostgreSQL, started together
on a migrated database, drain 300 queued webhook deliveries in small
batches: each reaches the receiver exactly once (FOR UPDATE SKIP LOCKED and
the lease, as for mail), and both workers took part."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select

from extensions import db
from models import DeliveryStatus, Role, User, WebhookDelivery
from services.outgoing_webhooks import endpoints
from services.outgoing_webhooks import events as outgoing
from tests import procs
from tests.helpers import add_user, app_beside
from tests.webhook_receiver import webhook_receiver

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

EVENTS = 300


def test_two_workers_on_postgresql_never_deliver_a_row_twice(tmp_path, fresh_pg_url):
    env = procs.app_env(
        tmp_path, fresh_pg_url, WEBHOOK_ALLOW_PRIVATE_TARGETS="1", WORKER_BATCH_SIZE="5"
    )
    procs.flask_db_upgrade(env)
    app = app_beside(env, tmp_path, WEBHOOK_ALLOW_PRIVATE_TARGETS=True)
    with webhook_receiver() as receiver:
        receiver.delay = 0.02  # long enough for the two to overlap
        add_user(app, "admin@example.com", Role.ADMIN)
        with app.app_context():
            admin = db.session.execute(select(User)).scalar_one()
            endpoints.create(receiver.url(), "CRM", ["lead.erased"], admin)
            for i in range(EVENTS):
                outgoing.emit("lead.erased", {"lead": f"lead-{i}"})
            db.session.commit()

        workers = [procs.worker_proc(env, tmp_path / f"worker-{n}.log", "--once") for n in range(2)]
        try:
            for w in workers:
                w.start()
            for w in workers:
                w.popen.wait(timeout=120)
        finally:
            for w in workers:
                w.stop()
        logs = "\n".join(w.log() for w in workers)
        assert [w.popen.returncode for w in workers] == [0, 0], logs

        ids = Counter(r.headers["webhook-id"] for r in receiver.requests)
        leads = Counter(r.payload["data"]["lead"] for r in receiver.requests)
    assert len(ids) == EVENTS and max(ids.values()) == 1
    assert sorted(leads) == sorted(f"lead-{i}" for i in range(EVENTS))
    assert max(leads.values()) == 1
    with app.app_context():
        by_status = dict(
            db.session.execute(
                select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
            ).all()
        )
        attempts = set(db.session.execute(select(WebhookDelivery.attempts)).scalars())
        owners = set(db.session.execute(select(WebhookDelivery.claimed_by)).scalars())
        db.session.remove()
        db.engine.dispose()
    assert by_status == {DeliveryStatus.DELIVERED: EVENTS}
    assert attempts == {1}
    assert len(owners) == 2, owners  # both workers delivered some
