"""Benchmark data: made with the app's own commands, cached between runs.

A cache entry is keyed by the code that shapes the data (the generator, the
models, the migrations and this file): change any of them and the data is
made anew. SQLite data lives in bench/.data/ (gitignored); on PostgreSQL in
a schema named after the key.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import common
from bench.common import DATA, Database, log
from tests import procs

MARKETER = ("bench-marketer@example.com", "bench-password-long-enough")
LEADS = 1_000_000
AUDIENCE = 200_000
FANOUT_LEADS = 250_000


def key() -> str:
    return common.code_key(
        "devtools/fake_data.py",
        "services/reporting/funnel.py",
        "models/*.py",
        "migrations/versions/*.py",
        "bench/data.py",
    )


@dataclass
class Dataset:
    db: Database
    generate_seconds: float | None
    made_at: str
    cached: bool


def _sqlite_cached(name: str, make) -> Dataset:
    """bench/.data/<name>-<key>.sqlite3, made by make(db) when missing."""
    DATA.mkdir(parents=True, exist_ok=True)
    k = key()
    path = DATA / f"{name}-{k}.sqlite3"
    meta_path = DATA / f"{name}-{k}.json"
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return Dataset(
            Database(f"sqlite:///{path}", "sqlite", path=path),
            meta.get("generate_seconds"),
            meta["made_at"],
            True,
        )
    for old in DATA.glob(f"{name}-*"):  # other code versions' data
        old.unlink(missing_ok=True)
    scratch = DATA / f"{name}-making"
    scratch.mkdir(parents=True, exist_ok=True)
    tmp = scratch / "db.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    db = Database(f"sqlite:///{tmp}", "sqlite", path=tmp)
    procs.flask_db_upgrade(common.env_for(scratch, db))
    seconds = make(db, scratch)
    conn = common.sql_connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    tmp.rename(path)
    made_at = datetime.now(UTC).isoformat(timespec="seconds")
    meta_path.write_text(json.dumps({"generate_seconds": seconds, "made_at": made_at}))
    shutil.rmtree(scratch, ignore_errors=True)
    return Dataset(Database(f"sqlite:///{path}", "sqlite", path=path), seconds, made_at, False)


def _pg_cached(name: str, make) -> Dataset:
    base = common.pg_base_url()
    schema = f"bench_{name.replace('-', '_')}_{key()}"
    db = Database(common.pg_schema_url(base, schema), "postgresql", schema=schema)
    if common.pg_schema_exists(base, schema):
        with contextlib.suppress(Exception):
            conn = common.pg_connect(db.url)
            try:
                seconds, made_at = conn.execute(
                    "SELECT generate_seconds, made_at FROM bench_meta"
                ).fetchone()
            finally:
                conn.close()
            return Dataset(db, seconds, made_at, True)
    common.pg_create_schema(base, schema)
    scratch = DATA / f"{name}-making"
    scratch.mkdir(parents=True, exist_ok=True)
    procs.flask_db_upgrade(common.env_for(scratch, db))
    seconds = make(db, scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    made_at = datetime.now(UTC).isoformat(timespec="seconds")
    common.execute(
        db,
        "CREATE TABLE bench_meta (generate_seconds float, made_at text)",
        f"INSERT INTO bench_meta VALUES ({seconds}, '{made_at}')",
    )
    return Dataset(db, seconds, made_at, False)


def cached(name: str, make) -> Dataset:
    return _pg_cached(name, make) if common.pg_base_url() else _sqlite_cached(name, make)


def _generate(db: Database, scratch: Path, count: int) -> float:
    """`flask leads generate COUNT`, timed as a user would run it."""
    env = common.env_for(scratch, db)
    log(f"generating {count:,} leads with `flask leads generate` ...")
    start = time.monotonic()
    procs.flask(env, "leads", "generate", str(count), timeout=900)
    seconds = time.monotonic() - start
    log(f"  {count:,} leads in {seconds:.1f} s")
    return seconds


def million() -> Dataset:
    """1,000,000 leads and a marketer account to sign in with."""

    def make(db: Database, scratch: Path) -> float:
        seconds = _generate(db, scratch, LEADS)
        env = common.env_for(scratch, db)
        email, password = MARKETER
        procs.flask(env, "users", "create", email, "--role", "marketer", "--password", password)
        return seconds

    return cached("leads-1m", make)


def fanout() -> Dataset:
    """250,000 leads of which exactly 200,000 are confirmed and want class
    announcements: the audience of the fan-out benchmark."""

    def make(db: Database, scratch: Path) -> float:
        seconds = _generate(db, scratch, FANOUT_LEADS)
        ignore = "ON CONFLICT DO NOTHING" if db.is_pg else ""
        insert = "INSERT" if db.is_pg else "INSERT OR IGNORE"
        common.execute(
            db,
            "UPDATE lead SET status = 'confirmed', unsubscribed_at = NULL,"
            f" confirmed_at = COALESCE(confirmed_at, created_at) WHERE id <= {AUDIENCE}",
            "UPDATE lead SET status = 'pending', confirmed_at = NULL, unsubscribed_at = NULL"
            f" WHERE id > {AUDIENCE}",
            f"{insert} INTO lead_topic (lead_id, topic)"
            f" SELECT id, 'cspo-classes' FROM lead WHERE id <= {AUDIENCE} {ignore}",
            "ANALYZE",
        )
        return seconds

    return cached("fanout-200k", make)
