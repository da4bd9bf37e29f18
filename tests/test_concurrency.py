"""200 signups at once against gunicorn with 2 workers, on SQLite and PostgreSQL.

A fifth of them are case or whitespace spellings of other addresses in the same
burst: they must land on the same lead, with no 5xx and one confirmation mail.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, text

from tests import procs
from tests.helpers import Visitor

pytestmark = pytest.mark.slow

DISTINCT = 160
VARIANTS = 40
THREADS = 40


def _spellings() -> tuple[list[str], set[str]]:
    """160 addresses plus 40 other spellings of some of them, shuffled."""
    distinct = [f"lead{i:03d}@example.com" for i in range(DISTINCT)]
    rng = random.Random(2024)
    variants = []
    for i, addr in enumerate(rng.sample(distinct, VARIANTS)):
        local, domain = addr.split("@")
        variants.append(
            [
                addr.upper(),
                f"  {addr}  ",
                f"{local.capitalize()}@{domain.upper()}",
                f"\t{addr.title()} ",
            ][i % 4]
        )
    burst = distinct + variants
    rng.shuffle(burst)
    return burst, set(distinct)


def _burst(base_url: str) -> list[int]:
    burst, _ = _spellings()
    visitors = [Visitor(base_url) for _ in burst]
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(Visitor.read_article, visitors))
        return list(pool.map(Visitor.sign_up, visitors, burst))


def _check_rows(database_url: str) -> None:
    _, expected = _spellings()
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            emails = conn.execute(text("SELECT email FROM lead")).scalars().all()
            confirmations = conn.execute(
                text(
                    "SELECT lead_id, count(*) FROM outbox_message "
                    "WHERE kind = 'confirmation' AND status <> 'skipped' GROUP BY lead_id"
                )
            ).all()
    finally:
        engine.dispose()
    assert len(emails) == DISTINCT
    assert set(emails) == expected
    assert len(confirmations) == DISTINCT, "a lead without a confirmation mail"
    assert all(n == 1 for _, n in confirmations), "more than one confirmation for a lead"


def _run(tmp_path, database_url: str) -> None:
    env = procs.app_env(
        tmp_path,
        database_url,
        FORM_MIN_SECONDS=0,
        SIGNUP_RATE_LIMIT="100000 per minute",
    )
    procs.flask_db_upgrade(env)
    with procs.gunicorn(env, workers=2) as server:
        statuses = _burst(server.url)
        log = server.log(tail=1_000_000)
    counts = {s: statuses.count(s) for s in set(statuses)}
    assert counts == {303: DISTINCT + VARIANTS}, (
        f"statuses {counts}\n--- gunicorn log\n{log[-4000:]}"
    )
    assert "Traceback" not in log, log[-4000:]
    _check_rows(database_url)


def test_concurrent_signups_sqlite(tmp_path):
    _run(tmp_path, f"sqlite:///{tmp_path / 'leads.sqlite3'}")


@pytest.mark.postgres
def test_concurrent_signups_postgresql(tmp_path, fresh_pg_url):
    _run(tmp_path, fresh_pg_url)
