"""Shared pieces of the benchmarks: results, statistics, processes, databases.

Processes reuse tests.procs (Proc, Server, app_env, flask commands), so the
benchmarks start gunicorn and the worker exactly as the tests do.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from html import unescape as html_unescape
from pathlib import Path

from tests import procs

ROOT = procs.ROOT
BENCH = ROOT / "bench"
DATA = BENCH / ".data"
PYTHON = procs.PYTHON
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari"
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# --- Results


@dataclass
class Figure:
    """One row of the results table."""

    name: str
    unit: str  # "req/s", "s", "ms", "MB", "mails/s"
    ours: float | None
    baseline: float | None = None
    baseline_name: str = "-"
    # "min_ratio" (ours/baseline >= bar), "max_ratio" (ours/baseline <= bar),
    # "max" (ours <= bar), "min" (ours >= bar), "ratio" (ours/baseline shown,
    # no bar), "info" (no bar)
    kind: str = "info"
    bar: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    base_p50_ms: float | None = None
    base_p99_ms: float | None = None
    note: str = ""
    errors: int | None = None
    base_errors: int | None = None
    rounds: list = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.baseline:
            return None
        return self.ours / self.baseline

    def ratio_text(self) -> str:
        """The ratio where the bar is one (else it would read as a verdict)."""
        if self.ratio is None or self.kind not in ("min_ratio", "max_ratio", "ratio"):
            return "-"
        return f"{self.ratio:.2f}x"

    @property
    def passed(self) -> bool | None:
        if self.ours is None:
            return False
        if self.errors:  # every bar includes "zero errors"; so does a figure without one
            return False
        if self.kind in ("info", "ratio") or self.bar is None:
            return None
        ok = {
            "min_ratio": lambda: self.ratio is not None and self.ratio >= self.bar,
            "max_ratio": lambda: self.ratio is not None and self.ratio <= self.bar,
            "max": lambda: self.ours <= self.bar,
            "min": lambda: self.ours >= self.bar,
        }[self.kind]()
        return ok

    def bar_text(self) -> str:
        if self.bar is None or self.kind in ("info", "ratio"):
            return "-"
        return {
            "min_ratio": f">= {self.bar:g}x",
            "max_ratio": f"<= {self.bar:g}x",
            "max": f"< {fmt_num(self.bar)} {self.unit}",
            "min": f">= {fmt_num(self.bar)} {self.unit}",
        }[self.kind]


def fmt_num(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        s = f"{v:,.0f}"
    elif abs(v) >= 100:
        s = f"{v:.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}"
    return f"{s} {unit}".strip()


def fmt_lat(p50: float | None, p99: float | None) -> str:
    if p50 is None:
        return "-"
    return f"{p50:.1f} / {p99:.1f}" if p99 is not None else f"{p50:.1f}"


def median(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- Machine


def machine() -> dict[str, str]:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    load = "?"
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "load": load,
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


# --- Code version, for caching generated data


def code_key(*paths: str) -> str:
    """A hash of the files that decide what generated data looks like."""
    h = hashlib.sha256()
    for pattern in paths:
        for p in sorted(ROOT.glob(pattern)):
            if p.is_file():
                h.update(str(p.relative_to(ROOT)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()[:12]


# --- Databases


@dataclass
class Database:
    """Where a benchmark's data lives: an SQLite file or a PostgreSQL schema."""

    url: str
    kind: str  # sqlite | postgresql
    path: Path | None = None  # SQLite file
    schema: str | None = None  # PostgreSQL schema

    @property
    def is_pg(self) -> bool:
        return self.kind == "postgresql"


def pg_base_url() -> str | None:
    """The PostgreSQL URL the run targets, or None for the default SQLite run."""
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL") or ""
    if not url.startswith(("postgres://", "postgresql")):
        return None
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def pg_connect(url: str):
    """A psycopg connection for a SQLAlchemy-style URL (with search_path option)."""
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    return psycopg.connect(plain)


def pg_drop_schema(base: str, schema: str) -> None:
    with contextlib.closing(pg_connect(base)) as conn:
        conn.autocommit = True
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def pg_create_schema(base: str, schema: str) -> None:
    with contextlib.closing(pg_connect(base)) as conn:
        conn.autocommit = True
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')


def pg_schema_exists(base: str, schema: str) -> bool:
    with contextlib.closing(pg_connect(base)) as conn:
        return (
            conn.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,)
            ).fetchone()
            is not None
        )


def fresh_database(scratch: Path, name: str) -> Database:
    """An empty, migrated database: a copy of a migrated template file on
    SQLite, a new migrated schema on PostgreSQL."""
    pg = pg_base_url()
    if pg:
        schema = f"bench_{name}_{os.getpid()}"
        pg_create_schema(pg, schema)
        db = Database(pg_schema_url(pg, schema), "postgresql", schema=schema)
        procs.flask_db_upgrade(env_for(scratch, db))
        return db
    template = scratch / "migrated.sqlite3"
    if not template.exists():
        tmp = Database(f"sqlite:///{template}", "sqlite", path=template)
        procs.flask_db_upgrade(env_for(scratch, tmp))
    path = scratch / f"{name}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(template, path)
    return Database(f"sqlite:///{path}", "sqlite", path=path)


def drop_database(db: Database) -> None:
    if db.is_pg and db.schema:
        pg_drop_schema(pg_base_url(), db.schema)
    elif db.path:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db.path}{suffix}").unlink(missing_ok=True)


def sql_connect(db: Database):
    """A DB-API connection (sqlite3 or psycopg) with the app's SQLite settings."""
    if db.is_pg:
        return pg_connect(db.url)
    conn = sqlite3.connect(db.path, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def scalar(db: Database, sql: str, params: Sequence = ()):
    conn = sql_connect(db)
    try:
        if db.is_pg:
            sql = sql.replace("?", "%s")
        return conn.execute(sql, params).fetchone()[0]
    finally:
        conn.close()


def execute(db: Database, *statements: str) -> None:
    conn = sql_connect(db)
    try:
        for sql in statements:
            conn.execute(sql)
        conn.commit()
    finally:
        conn.close()


# --- Processes


def env_for(scratch: Path, db: Database, **settings: object) -> dict[str, str]:
    """The app's environment for db, with the bench's settings: limits that
    would stop a load test are lifted, the rest is the default. SITE_URL is
    left out: `serve` sets it to the server's own origin (see `origin`), the
    one the load clients send in Origin and Referer."""
    return procs.app_env(
        scratch,
        db.url,
        SECRET_KEY="bench-secret-key-not-for-production",
        SIGNUP_RATE_LIMIT="1000000 per minute",
        LOGIN_RATE_LIMIT="1000 per minute",
        FORM_MIN_SECONDS=0,
        LOG_LEVEL="WARNING",
        **settings,
    )


@contextlib.contextmanager
def serve(
    env: Mapping[str, str], app_spec: str, scratch: Path, *, workers: int = 2, tag: str = "srv"
) -> Iterator[procs.Server]:
    """gunicorn serving app_spec (ours: 'app:create_app()'), healthy on entry,
    SITE_URL its own origin unless env says otherwise. Ours and every
    baseline run under the same gunicorn settings: the tests' (procs.gunicorn)."""
    port = procs.free_port()
    log_path = scratch / f"{tag}-{port}.log"
    with procs.gunicorn(
        env, workers=workers, port=port, log_path=log_path, app_spec=app_spec, health_timeout=60
    ) as server:
        yield server


def children(pid: int) -> list[int]:
    """Direct children of pid (gunicorn's workers)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out.extend(int(c) for c in (task / "children").read_text().split())
    if out:
        return out
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(stat.parent.name))
    return out


def proc_mem(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of pid in MB (empty when it is gone)."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) / 1024
    return out


def settle(pids: Sequence[int], timeout: float = 15.0) -> None:
    """Wait until the VmRSS of every pid has stayed within 1 MB for a second
    (a worker still starting up would otherwise count in a measurement)."""
    deadline = time.monotonic() + timeout
    last, steady = None, 0
    while time.monotonic() < deadline and steady < 5:
        now = [proc_mem(pid).get("VmRSS", 0) for pid in pids]
        close = last is not None and all(abs(a - b) < 1 for a, b in zip(now, last, strict=True))
        steady = steady + 1 if close else 0
        last = now
        time.sleep(0.2)


class RssSampler:
    """Samples VmRSS of some processes every `interval` seconds in a thread."""

    def __init__(self, pids_fn, interval: float = 0.05):
        self.pids_fn = pids_fn
        self.interval = interval
        self.samples: list[tuple[float, int, float]] = []  # (monotonic, pid, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for pid in self.pids_fn():
                rss = proc_mem(pid).get("VmRSS")
                if rss is not None:
                    self.samples.append((now, pid, rss))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def peak(self) -> float | None:
        return max((s[2] for s in self.samples), default=None)

    def peak_total(self) -> float | None:
        """The largest sum over the processes sampled at the same moment."""
        totals: dict[float, float] = {}
        for at, _, rss in self.samples:
            totals[at] = totals.get(at, 0.0) + rss
        return max(totals.values(), default=None)


# --- Load generator (a separate process)


def run_load(spec: dict, timeout: float | None = None) -> dict:
    """Run bench.load with spec in its own process; its JSON result."""
    timeout = timeout or spec.get("duration", 10) + spec.get("warmup", 0) + 60
    result = subprocess.run(
        [PYTHON, "-m", "bench.load"],
        cwd=ROOT,
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)


# --- A tiny HTTP client for set-up steps and checks


def origin(port: int) -> str:
    """The origin of a server `serve` started: its SITE_URL, and what a
    browser showing one of its pages sends in Origin."""
    return f"http://127.0.0.1:{port}"


def get(
    port: int, path: str, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, list[str]], bytes]:
    """One GET as an anonymous browser sends it (no cookie): the status, the
    headers (lower-case names, every value kept: Set-Cookie may repeat) and
    the body's bytes as sent."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers={"User-Agent": UA, **(headers or {})})
        resp = conn.getresponse()
        body = resp.read()
        out: dict[str, list[str]] = {}
        for name, value in resp.getheaders():
            out.setdefault(name.lower(), []).append(value)
        return resp.status, out, body
    finally:
        conn.close()


_INPUT = re.compile(r"<input\b[^>]*>")
_ATTR = re.compile(r'([\w-]+)="([^"]*)"')
_FORM = re.compile(r'<form class="signup".*?</form>', re.S)


class Browser:
    """One signed-in member of staff (public pages need no cookie): cookies
    kept across requests, no redirects followed."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, dict, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"User-Agent": UA}
        if self.cookies:
            headers["Cookie"] = self.cookie_header()
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form, doseq=True)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
            for name, value in resp.getheaders():
                if name.lower() == "set-cookie":
                    key, _, rest = value.partition("=")
                    self.cookies[key.strip()] = rest.split(";", 1)[0]
            return resp.status, dict(resp.getheaders()), text
        finally:
            conn.close()

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def login(self, email: str, password: str) -> None:
        status, _, html = self.request("GET", "/login")
        fields = hidden_fields(html)
        status, _, _ = self.request(
            "POST", "/login", {**fields, "email": email, "password": password}
        )
        if status != 303:
            raise RuntimeError(f"sign-in as {email} answered {status}")


def signup_fields(html: str) -> dict[str, str]:
    """The hidden fields of the first signup form on a page."""
    form = _FORM.search(html)
    if not form:
        raise RuntimeError("no signup form on the page")
    return hidden_fields(form.group(0))


def hidden_fields(html: str) -> dict[str, str]:
    """name: value of the hidden inputs in html, whatever the attribute order."""
    out = {}
    for tag in _INPUT.findall(html):
        attrs = dict(_ATTR.findall(tag))
        if attrs.get("type") == "hidden" and "name" in attrs:
            out[attrs["name"]] = html_unescape(attrs.get("value", ""))
    return out


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")
