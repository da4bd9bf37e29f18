"""The benchmarks. Each takes the run's Context and returns Figures.

Throughput and timing figures interleave the two sides round by round
(baseline, ours, baseline, ours...) and report the median round, so a
neighbour's burst of CPU use on a shared machine hits both sides alike.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import common, data, releases
from bench.common import Browser, Database, Figure, log, median, percentile
from bench.compression import compression
from bench.imports import import_bench
from tests import procs

ARTICLE = "/cspo-certification-benefits"


@dataclass
class Context:
    scratch: Path
    rounds: int = 3
    duration: float = 6.0
    warmup: float = 1.0
    connections: int = 6
    mails: int = 1500
    rss_mails: int = 0  # a longer drain for the RSS figure (0: the timed drains)
    notes: list[str] = field(default_factory=list)


# --- 1. Data generation


def generate(ctx: Context) -> list[Figure]:
    ds = data.million()
    note = "`flask leads generate 1000000` on a migrated database"
    if ds.cached:
        note += f"; measured when the cached data was made ({ds.made_at})"
    return [
        Figure(
            "generate 1,000,000 leads",
            "s",
            ds.generate_seconds,
            kind="max",
            bar=60,
            note=note,
        )
    ]


# --- 2. Signup


def _signup_clients_ours(port: int, n: int) -> list[dict]:
    """One client per connection, behaving as a browser: it GETs the article
    once for the form's hidden fields (placement, source, the signed time
    stamp; not timed) and keeps no cookie (the page sets none), then posts
    the form from the page: Origin is the server's own (its SITE_URL, set by
    common.serve), Referer the article's URL."""
    site = common.origin(port)
    clients = []
    for _ in range(n):
        status, headers, body = common.get(port, ARTICLE)
        if status != 200:
            raise RuntimeError(f"GET {ARTICLE} answered {status}")
        if "set-cookie" in headers:
            raise RuntimeError(f"GET {ARTICLE} set a cookie: {headers['set-cookie']}")
        fields = common.signup_fields(body.decode())
        if not fields.get("started"):
            raise RuntimeError(f"the signup form on {ARTICLE} has no time stamp: {fields}")
        clients.append(
            {
                "method": "POST",
                "path": "/subscribe",
                "headers": {"Origin": site, "Referer": site + ARTICLE},
                "body": urllib.parse.urlencode(fields)
                + "&name=&topics=cspo-classes&email=lead%N%%40example.com",
                "user_agent": common.UA,
                "expect": [303],
            }
        )
    return clients


def _signup_clients_baseline(port: int) -> list[dict]:
    site = common.origin(port)
    return [
        {
            "method": "POST",
            "path": "/signup",
            "headers": {"Origin": site, "Referer": site + ARTICLE},
            "body": "email=lead%N%%40example.com",
            "user_agent": common.UA,
            "expect": [303],
        }
    ]


def _signup_side(ctx: Context, side: str, rnd: int) -> dict:
    db = common.fresh_database(ctx.scratch, f"signup_{side}_{rnd}")
    try:
        env = common.env_for(ctx.scratch, db)
        spec_app = "app:create_app()" if side == "ours" else "bench.baselines.signup_app:app"
        with common.serve(env, spec_app, ctx.scratch, tag=f"signup-{side}") as server:
            if side == "ours":
                clients = _signup_clients_ours(server.port, ctx.connections)
            else:
                clients = _signup_clients_baseline(server.port)
            result = common.run_load(
                {
                    "port": server.port,
                    "connections": ctx.connections,
                    "warmup": ctx.warmup,
                    "duration": ctx.duration,
                    "max_requests": 1_000_000,
                    "clients": clients,
                }
            )
            log_text = server.log(tail=200_000)
        answered = result["statuses"].get("303", 0)
        leads = common.scalar(db, "SELECT count(*) FROM lead")
        mails = common.scalar(db, "SELECT count(*) FROM outbox_message WHERE kind = 'confirmation'")
        # A 303 without its rows is an error too (ours answers bots with a
        # 303 and no row: none may be taken for one here).
        missing = abs(answered - leads) + abs(leads - mails)
        result["errors"] += missing
        result["tracebacks"] = log_text.count("Traceback")
        result["errors"] += result["tracebacks"]
        log(
            f"  signup {side} round {rnd}: {result['rps']:.0f}/s p50 {result['p50_ms']:.1f} ms"
            f" p99 {result['p99_ms']:.1f} ms errors {result['errors']} (rows {leads}/{answered},"
            f" statuses {result['statuses']})"
        )
        return result
    finally:
        common.drop_database(db)


def signup(ctx: Context) -> list[Figure]:
    base, ours = [], []
    for rnd in range(ctx.rounds):
        base.append(_signup_side(ctx, "baseline", rnd))
        ours.append(_signup_side(ctx, "ours", rnd))
    fig = _throughput_figure(
        "signup POSTs/s (gunicorn, 2 workers)", ours, base, 0.8, "30-line Flask-SQLAlchemy endpoint"
    )
    fig.note = "every 303 checked for its lead and confirmation mail rows"
    return [fig]


def _throughput_figure(name, ours, base, bar, what) -> Figure:
    return Figure(
        name,
        "req/s",
        median([r["rps"] for r in ours]),
        median([r["rps"] for r in base]),
        baseline_name=what,
        kind="min_ratio",
        bar=bar,
        p50_ms=median([r["p50_ms"] for r in ours]),
        p99_ms=median([r["p99_ms"] for r in ours]),
        base_p50_ms=median([r["p50_ms"] for r in base]),
        base_p99_ms=median([r["p99_ms"] for r in base]),
        errors=sum(r["errors"] for r in ours),
        base_errors=sum(r["errors"] for r in base),
        rounds=[(round(b["rps"]), round(o["rps"])) for b, o in zip(base, ours, strict=True)],
    )


# --- 3. Article


def _article_checks(port: int, headers: dict[str, list[str]]) -> tuple[list[str], int]:
    """What issue 11 asks of a public page besides speed, checked on ours:
    an anonymous GET sets no cookie, and a conditional GET with the ETag it
    returned is answered 304 (with no body). The checks as text, and how
    many failed."""
    checks, failed = [], 0
    cookies = headers.get("set-cookie", [])
    if cookies:
        failed += 1
        names = ", ".join(c.split("=", 1)[0] for c in cookies)
        checks.append(f"anonymous GET sets a cookie ({names}): FAILED")
    else:
        checks.append("anonymous GET sets no cookie: ok")
    etag = (headers.get("etag") or [None])[0]
    if etag is None:
        failed += 1
        checks.append("no ETag, so no conditional GET: FAILED")
        return checks, failed
    status, _, body = common.get(port, ARTICLE, {"If-None-Match": etag})
    if status == 304 and not body:
        checks.append(f"If-None-Match {etag} answered 304: ok")
    else:
        failed += 1
        checks.append(f"If-None-Match {etag} answered {status}: FAILED")
    return checks, failed


def _article_load(ctx: Context, port: int, client: dict, side: str, rnd: int) -> dict:
    r = common.run_load(
        {
            "port": port,
            "connections": ctx.connections,
            "warmup": ctx.warmup,
            "duration": ctx.duration,
            "max_requests": 1_000_000,
            "clients": [client],
        }
    )
    log(
        f"  article {side} round {rnd}: {r['rps']:.0f}/s p50 {r['p50_ms'] or 0:.1f} ms"
        f" p99 {r['p99_ms'] or 0:.1f} ms errors {r['errors']} {r['error_kinds'] or ''}"
    )
    return r


def article(ctx: Context) -> list[Figure]:
    db = common.fresh_database(ctx.scratch, "article")
    page = ctx.scratch / "article.html"
    try:
        env = common.env_for(ctx.scratch, db)
        with common.serve(env, "app:create_app()", ctx.scratch, tag="article-ours") as ours_srv:
            status, headers, body = common.get(ours_srv.port, ARTICLE)
            if status != 200:
                raise RuntimeError(f"GET {ARTICLE} answered {status}")
            checks, failed = _article_checks(ours_srv.port, headers)
            log(f"  article checks: {'; '.join(checks)}")
            # The page as served, verbatim; the baseline returns these bytes.
            page.write_bytes(body)
            base_env = {**env, "BENCH_ARTICLE_FILE": str(page)}
            with common.serve(
                base_env, "bench.baselines.article_app:app", ctx.scratch, tag="article-base"
            ) as base_srv:
                b_status, _, b_body = common.get(base_srv.port, ARTICLE)
                if b_status != 200 or b_body != body:
                    raise RuntimeError("the baseline does not return the bytes ours served")
                # Every response of either side must be the page's size (ours
                # differs from the saved bytes only in the time stamp, which
                # keeps its length); ours may set no cookie on any of them.
                plain = {
                    "method": "GET",
                    "path": ARTICLE,
                    "headers": {},
                    "user_agent": common.UA,  # a browser's: the view counter counts
                    "expect": [200],
                    "expect_length": len(body),
                }
                ours_plain = {**plain, "forbid_headers": ["set-cookie"]}
                etag = (headers.get("etag") or [""])[0]
                conditional = {
                    **ours_plain,
                    "headers": {"If-None-Match": etag},
                    "expect": [304],
                    "expect_length": 0,
                }
                base, ours, cond = [], [], []
                for rnd in range(ctx.rounds):
                    base.append(_article_load(ctx, base_srv.port, plain, "baseline", rnd))
                    ours.append(_article_load(ctx, ours_srv.port, ours_plain, "ours", rnd))
                    cond.append(
                        _article_load(ctx, ours_srv.port, conditional, "ours, conditional", rnd)
                    )
            tracebacks = ours_srv.log(tail=200_000).count("Traceback")
        fig = _throughput_figure("article GETs/s", ours, base, 1.0, "bare Flask, same bytes")
        fig.errors += failed + tracebacks
        cookies = sum(r["error_kinds"].get("header set-cookie", 0) for r in ours + cond)
        fig.note = (
            f"page of {len(body):,} bytes; checks: {'; '.join(checks)};"
            f" Set-Cookie on {cookies} of {sum(r['total'] for r in ours + cond):,}"
            " responses under load"
        )
        cond_fig = _throughput_figure(
            "article conditional GETs/s (If-None-Match: 304)",
            cond,
            base,
            None,
            "bare Flask, same bytes: 200",
        )
        cond_fig.kind = "ratio"
        cond_fig.errors += tracebacks
        cond_fig.note = "ours answers 304 with no body; the baseline sends the page"
        return [fig, cond_fig]
    finally:
        common.drop_database(db)


# --- 4. Export


def _download(port: int, path: str, cookie: str | None) -> dict:
    """GET path, the body read to the end and dropped (chunked or not): times
    to the first byte of the response and to the end, body bytes and lines."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {common.UA}\r\n"
    if cookie:
        head += f"Cookie: {cookie}\r\n"
    start = time.monotonic()
    sock.sendall((head + "\r\n").encode())
    reader = sock.makefile("rb", buffering=1 << 20)
    total = lines = 0
    truncated = False
    try:
        status_line = reader.readline()
        first = time.monotonic() - start
        status = int(status_line.split(b" ", 2)[1])
        headers = {}
        while (line := reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip().lower()
        if headers.get("transfer-encoding") == "chunked":
            while True:
                size_line = reader.readline()
                if not size_line:  # cut off before the last chunk
                    truncated = True
                    break
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    break
                body = reader.read(size)
                reader.read(2)
                total += len(body)
                lines += body.count(b"\n")
        else:
            while body := reader.read(1 << 20):
                total += len(body)
                lines += body.count(b"\n")
    finally:
        reader.close()
        sock.close()
    return {
        "seconds": time.monotonic() - start,
        "first_byte": first,
        "bytes": total,
        "lines": lines,
        "status": status,
        "truncated": truncated,
    }


def _export_side(ctx: Context, side: str, db: Database, rnd: int, cookie: str) -> dict:
    from services.reporting.export import HEADER

    env = common.env_for(ctx.scratch, db, BENCH_EXPORT_HEADER=",".join(HEADER))
    spec_app = "app:create_app()" if side == "ours" else "bench.baselines.export_app:app"
    with common.serve(env, spec_app, ctx.scratch, tag=f"export-{side}") as server:
        path = "/marketing/leads.csv" if side == "ours" else "/leads.csv"
        workers = common.children(server.pid)
        # /healthz answered means one worker is up; the other may still be
        # importing the app. Start once every worker's memory is steady.
        common.settle(workers)
        before = {pid: common.proc_mem(pid).get("VmRSS", 0) for pid in workers}
        with common.RssSampler(lambda: workers) as sampler:
            r = _download(server.port, path, cookie if side == "ours" else None)
        hwm = {pid: common.proc_mem(pid).get("VmHWM", 0) for pid in workers}
        sampled = {
            pid: max((s[2] for s in sampler.samples if s[1] == pid), default=0) for pid in workers
        }
        # The worker that served the export is the one whose memory moved most.
        served = max(workers, key=lambda pid: sampled[pid] - before.get(pid, 0))
        r["peak_rss_mb"] = hwm[served]
        r["rss_before_mb"] = before.get(served)
        r["sampled_peak_mb"] = sampled[served]
        r["tracebacks"] = server.log(tail=200_000).count("Traceback")
    # Header + one line per lead (no value holds a line break).
    r["errors"] = (
        int(r["status"] != 200)
        + int(r["lines"] != data.LEADS + 1)
        + int(r["truncated"])
        + r["tracebacks"]
    )
    log(
        f"  export {side} round {rnd}: {r['seconds']:.1f} s, first byte {r['first_byte']:.3f} s,"
        f" {r['bytes'] / 1e6:.0f} MB, {r['lines']:,} lines, worker VmHWM {r['peak_rss_mb']:.0f} MB,"
        f" VmRSS {r['rss_before_mb']:.0f} -> {r['sampled_peak_mb']:.0f} MB, status {r['status']}"
    )
    return r


def _marketer_cookie(ctx: Context, db: Database) -> str:
    """Sign in on a server of its own: the sign-in's argon2 hash (64 MiB)
    must not count in the export worker's peak memory. The session cookie
    works on any server with the same SECRET_KEY."""
    env = common.env_for(ctx.scratch, db)
    with common.serve(env, "app:create_app()", ctx.scratch, tag="login") as server:
        b = Browser(server.port)
        b.login(*data.MARKETER)
        return b.cookie_header()


def export(ctx: Context) -> list[Figure]:
    ds = data.million()
    cookie = _marketer_cookie(ctx, ds.db)
    base, ours = [], []
    for rnd in range(ctx.rounds):
        base.append(_export_side(ctx, "baseline", ds.db, rnd, cookie))
        ours.append(_export_side(ctx, "ours", ds.db, rnd, cookie))
    errors = sum(r["errors"] for r in ours)
    return [
        Figure(
            "export 1,000,000 leads over HTTP: time",
            "s",
            median([r["seconds"] for r in ours]),
            median([r["seconds"] for r in base]),
            baseline_name="csv + DB-API cursor, bare Flask",
            kind="max_ratio",
            bar=1.5,
            errors=errors,
            base_errors=sum(r["errors"] for r in base),
            note=f"{median([r['bytes'] for r in ours]) / 1e6:.0f} MB of CSV (baseline"
            f" {median([r['bytes'] for r in base]) / 1e6:.0f} MB)",
            rounds=[
                (round(b["seconds"], 1), round(o["seconds"], 1))
                for b, o in zip(base, ours, strict=True)
            ],
        ),
        Figure(
            "export: first byte",
            "s",
            median([r["first_byte"] for r in ours]),
            median([r["first_byte"] for r in base]),
            baseline_name="same",
            kind="max",
            bar=0.5,
            errors=errors,
        ),
        Figure(
            "export: peak RSS of the gunicorn worker",
            "MB",
            max(r["peak_rss_mb"] for r in ours),
            max(r["peak_rss_mb"] for r in base),
            baseline_name="same",
            kind="max",
            bar=100,
            errors=errors,
            note="VmHWM of the worker that served it (its whole life: start-up included);"
            f" VmRSS sampled during the export peaked at"
            f" {max(r['sampled_peak_mb'] or 0 for r in ours):.0f} MB, at rest before it"
            f" {median([r['rss_before_mb'] for r in ours]):.0f} MB (baseline:"
            f" {max(r['sampled_peak_mb'] or 0 for r in base):.0f} and"
            f" {median([r['rss_before_mb'] for r in base]):.0f} MB)",
        ),
    ]


# --- 5. Lead browser and dashboard at 1,000,000 leads


BROWSE = [
    ("lead list, no filter", "/marketing/leads", 100),
    (
        "lead list: confirmed + newsletter",
        "/marketing/leads?status=confirmed&topic=newsletter",
        100,
    ),
    (
        "lead list: article + form + pending",
        "/marketing/leads?source=how-hard-is-the-cspo&placement=end&status=pending",
        100,
    ),
    (
        "lead list: campaign, oldest first",
        "/marketing/leads?utm_campaign=spring-cspo&sort=oldest",
        100,
    ),
    ("lead list: email prefix", "/marketing/leads?q=lead4242", 100),
    ("lead list: one month, by email", "/marketing/leads?since={month_ago}&sort=email", 100),
    ("lead list: page 2 (cursor)", "{page2}", 100),
    ("dashboard (30 days)", "/marketing/", 500),
    ("dashboard (90 days)", "/marketing/?days=90", 500),
]


def browse(ctx: Context, requests: int = 25) -> list[Figure]:
    import re

    ds = data.million()
    env = common.env_for(ctx.scratch, ds.db)
    figures = []
    with common.serve(env, "app:create_app()", ctx.scratch, tag="browse") as server:
        b = Browser(server.port)
        b.login(*data.MARKETER)
        _, _, html = b.request("GET", "/marketing/leads")
        nxt = re.search(r'href="(/marketing/leads\?[^"]*after=[^"]+)"', html)
        page2 = nxt.group(1).replace("&amp;", "&") if nxt else "/marketing/leads"
        month_ago = datetime.now(UTC).date().toordinal() - 30
        month = datetime.fromordinal(month_ago).date().isoformat()
        for name, path, bar in BROWSE:
            path = path.format(page2=page2, month_ago=month)
            times, errors = [], 0
            for i in range(requests + 3):
                start = time.monotonic()
                status, _, html = b.request("GET", path)
                elapsed = (time.monotonic() - start) * 1000
                # A list page that shows no lead did not do its job.
                errors += status != 200 or ("leads" in path and html.count("<tr>") < 2)
                if i >= 3:
                    times.append(elapsed)
            p50, p99 = median(times), percentile(times, 99)
            log(f"  {name}: median {p50:.1f} ms, p99 {p99:.1f} ms, errors {errors}")
            figures.append(
                Figure(
                    f"{name}, 1M leads",
                    "ms",
                    p50,
                    kind="max",
                    bar=bar,
                    p50_ms=p50,
                    p99_ms=p99,
                    errors=errors,
                    note=f"median of {requests} GETs; {path[:60]}",
                )
            )
        errors = server.log(tail=200_000).count("Traceback")
        if errors:
            figures[-1].errors = (figures[-1].errors or 0) + errors
    return figures


# --- 6. Fan-out


BASELINE_FANOUT = (
    "INSERT INTO outbox_message"
    " (kind, lead_id, announcement_id, status, send_after, created_at, attempts)"
    " SELECT 'announcement', lead.id, {ann}, 'queued', {now}, {now}, 0"
    " FROM lead JOIN lead_topic ON lead_topic.lead_id = lead.id"
    " AND lead_topic.topic = 'cspo-classes'"
    " WHERE lead.status = 'confirmed'"
)


def _clean_fanout(db: Database) -> None:
    common.execute(db, "DELETE FROM outbox_message", "DELETE FROM announcement")


def _fanout_ours(app) -> tuple[float, int]:
    from extensions import db as sa
    from models import Announcement, AnnouncementStatus
    from services import clock
    from services.campaigns import announcements

    with app.app_context():
        ann = Announcement(
            subject="New CSPO classes",
            body="Hello {{ first_name }}",
            topic="cspo-classes",
            status=AnnouncementStatus.SCHEDULED,
            send_at=clock.now(),
            created_at=clock.now(),
        )
        sa.session.add(ann)
        sa.session.commit()
        ann_id = ann.id
        start = time.monotonic()
        queued = announcements.fan_out(ann_id)
        sa.session.commit()
        seconds = time.monotonic() - start
        sa.session.remove()
    return seconds, queued


def _fanout_baseline(db: Database) -> tuple[float, int]:
    now = datetime.now(UTC)
    if db.is_pg:
        stamp = f"'{now.isoformat()}'"
    else:
        stamp = f"'{now.replace(tzinfo=None).isoformat(sep=' ')}'"
    common.execute(
        db,
        "INSERT INTO announcement (public_id, subject, body, topic, status, send_timezone,"
        " ignore_frequency_cap, created_at)"
        f" VALUES ('bench-baseline', 's', 'b', 'cspo-classes', 'sending', 'UTC', false, {stamp})",
    )
    ann = common.scalar(db, "SELECT id FROM announcement WHERE public_id = 'bench-baseline'")
    conn = common.sql_connect(db)
    try:
        start = time.monotonic()
        cur = conn.execute(BASELINE_FANOUT.format(ann=ann, now=stamp))
        conn.commit()
        seconds = time.monotonic() - start
        return seconds, cur.rowcount
    finally:
        conn.close()


def fanout(ctx: Context) -> list[Figure]:
    from app import create_app

    ds = data.fanout()
    app = create_app({"SQLALCHEMY_DATABASE_URI": ds.db.url, "SECRET_KEY": "bench"})
    base, ours, errors, base_errors = [], [], 0, 0
    _clean_fanout(ds.db)
    try:
        for rnd in range(ctx.rounds):
            b_s, b_n = _fanout_baseline(ds.db)
            _clean_fanout(ds.db)
            o_s, o_n = _fanout_ours(app)
            _clean_fanout(ds.db)
            errors += o_n != data.AUDIENCE
            base_errors += b_n != data.AUDIENCE
            log(
                f"  fan-out round {rnd}: baseline {b_s:.2f} s ({b_n:,}), ours {o_s:.2f} s ({o_n:,})"
            )
            base.append(b_s)
            ours.append(o_s)
    finally:
        with app.app_context():
            from extensions import db as sa

            sa.engine.dispose()
    return [
        Figure(
            f"fan-out of one announcement to {data.AUDIENCE:,} leads",
            "s",
            median(ours),
            median(base),
            baseline_name="one raw INSERT ... SELECT",
            kind="max_ratio",
            bar=1.5,
            errors=errors,
            base_errors=base_errors,
            note=f"of {data.FANOUT_LEADS:,} leads; fan_out() + commit vs the statement + commit",
            rounds=[(round(b, 2), round(o, 2)) for b, o in zip(base, ours, strict=True)],
        )
    ]


# --- 7. Delivery


def _delivery_template(ctx: Context, n: int) -> Database:
    """n confirmed leads with one due mail each: half welcome, half an
    announcement (Markdown merge tags, frequency cap checked)."""
    from sqlalchemy import create_engine, insert, text

    from models import Announcement, Lead, LeadTopic, OutboxMessage

    db = common.fresh_database(ctx.scratch, f"delivery_{n}")
    now = datetime.now(UTC)
    engine = create_engine(db.url)
    with engine.begin() as conn:
        conn.execute(
            insert(Announcement.__table__),
            [
                {
                    "id": 1,
                    "public_id": "bench-ann",
                    "subject": "New CSPO classes for you",
                    "body": "Hello {{ first_name }},\n\nThe **next CSPO classes** are open."
                    " [See the dates]({{ unsubscribe_url }}).\n\n- two days\n- online\n",
                    "topic": "cspo-classes",
                    "status": "sending",
                    "send_timezone": "UTC",
                    "ignore_frequency_cap": False,
                    "created_at": now,
                }
            ],
        )
        leads = [
            {
                "id": i,
                "public_id": f"bench{i}",
                "email": f"lead{i}@example.com",
                "name": "Ann",
                "status": "confirmed",
                "created_at": now,
                "confirmed_at": now,
            }
            for i in range(1, n + 1)
        ]
        rows = [
            {
                "id": i,
                "kind": "welcome" if i % 2 else "announcement",
                "lead_id": i,
                "announcement_id": None if i % 2 else 1,
                "status": "queued",
                "send_after": now,
                "created_at": now,
                "attempts": 0,
            }
            for i in range(1, n + 1)
        ]
        for table, values in (
            (Lead.__table__, leads),
            (
                LeadTopic.__table__,
                [{"lead_id": i, "topic": "cspo-classes"} for i in range(1, n + 1)],
            ),
            (OutboxMessage.__table__, rows),
        ):
            for start in range(0, len(values), 5000):
                conn.execute(insert(table), values[start : start + 5000])
        if db.is_pg:
            for table in ("lead", "outbox_message", "announcement"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {n})"))
    engine.dispose()
    return db


def _reset_queue(db: Database) -> None:
    common.execute(
        db,
        "UPDATE outbox_message SET status = 'queued', attempts = 0, lease_until = NULL,"
        " claimed_by = NULL, sent_at = NULL, subject = NULL, last_error = NULL",
        "UPDATE announcement SET status = 'sending', finished_at = NULL",
        "DELETE FROM suppression",
    )
    if not db.is_pg:
        conn = common.sql_connect(db)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()


def _samples(db: Database, out: Path) -> None:
    """One welcome and one announcement as our app composes them, for the
    baseline's pre-built messages."""
    from app import create_app
    from extensions import db as sa
    from models import Lead, OutboxMessage
    from services.mail.compose import compose

    out.mkdir(parents=True, exist_ok=True)
    app = create_app({"SQLALCHEMY_DATABASE_URI": db.url, "SECRET_KEY": "bench"})
    with app.app_context():
        for row_id in (1, 2):
            row = sa.session.get(OutboxMessage, row_id)
            lead = sa.session.get(Lead, row.lead_id)
            (out / f"{row_id}.eml").write_bytes(compose(row, lead).mail.data)
        sa.session.remove()
        sa.engine.dispose()


@contextlib.contextmanager
def _sink(ctx: Context, tag: str):
    port = procs.free_port()
    out = ctx.scratch / f"sink-{tag}.json"
    out.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [common.PYTHON, "-m", "bench.smtp_sink", str(port), str(out)],
        cwd=common.ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        proc.stdout.readline()  # "ready"
        common.wait_port(port)
        result: dict = {}
        yield port, result
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    result.update(json.loads(out.read_text()))


def _rate(sink: dict) -> float | None:
    if sink["count"] < 2:
        return None
    return (sink["count"] - 1) / (sink["last"] - sink["first"])


def _drain_baseline(ctx: Context, n: int, samples: Path, rnd: int) -> dict:
    with _sink(ctx, "base") as (port, sink):
        subprocess.run(
            [common.PYTHON, "-m", "bench.baselines.smtp_loop", str(port), str(samples), str(n)],
            cwd=common.ROOT,
            check=True,
            capture_output=True,
            timeout=900,
        )
    r = {"rate": _rate(sink), "count": sink["count"], "errors": int(sink["count"] != n)}
    r["p50_ms"], r["p99_ms"] = median(sink["gaps_ms"]), percentile(sink["gaps_ms"], 99)
    log(f"  delivery baseline round {rnd}: {r['rate']:.0f} mails/s, {sink['count']:,} received")
    return r


@dataclass(frozen=True)
class WorkerSide:
    """Worker commands measured in a delivery drain: whose code, how many
    processes, which settings."""

    label: str
    settings: dict = field(default_factory=dict)
    processes: int = 1
    previous_release: bool = False


# Ours in each setup; the previous release as it runs by default.
DELIVERY_SETUPS = (
    WorkerSide("1 process, 1 connection"),
    WorkerSide("1 process, 4 connections", {"WORKER_CONNECTIONS": 4}),
    WorkerSide("2 worker processes, 1 connection each", processes=2),
)
PREVIOUS = WorkerSide("previous release, 1 process, 1 connection", previous_release=True)


def _drain_worker(
    ctx: Context, db: Database, n: int, side: WorkerSide, tag: str, rnd: int, root: Path
) -> dict:
    """`flask worker --once` (side.processes of them at once, from the tree at
    root) draining the n queued rows into a fresh SMTP sink."""
    _reset_queue(db)
    with _sink(ctx, tag) as (port, sink):
        env = common.env_for(
            ctx.scratch,
            db,
            MAIL_BACKEND="smtp",
            MAIL_SERVER="127.0.0.1",
            MAIL_PORT=port,
            SITE_URL="http://127.0.0.1:5000",
            **side.settings,
        )
        logs = [ctx.scratch / f"worker-{tag}-{i}.log" for i in range(side.processes)]
        workers = [releases.start_worker(root, env, log_path) for log_path in logs]
        first = workers[0]
        with common.RssSampler(lambda: [first.pid] if first.poll() is None else [], 0.1) as rss:
            for worker in workers:
                worker.wait(timeout=1800)
        worker_log = "".join(log_path.read_text(errors="replace") for log_path in logs)
    sent = common.scalar(db, "SELECT count(*) FROM outbox_message WHERE status = 'sent'")
    times = sink["times"]

    def rss_at(t: float | None) -> float | None:
        if t is None:
            return None
        before = [s[2] for s in rss.samples if s[0] <= t]
        return before[-1] if before else None

    r = {
        "rate": _rate(sink),
        "count": sink["count"],
        "sent": sent,
        "errors": int(sink["count"] != n) + int(sent != n) + worker_log.count("Traceback"),
        "p50_ms": median(sink["gaps_ms"]),
        "p99_ms": percentile(sink["gaps_ms"], 99),
        "rss": [
            rss_at(times[len(times) // 4] if times else None),
            rss_at(times[len(times) // 2] if times else None),
            rss.samples[-1][2] if rss.samples else None,
        ],
    }
    log(
        f"  delivery {side.label} round {rnd}: {r['rate'] or 0:.0f} mails/s,"
        f" {sink['count']:,} received, {sent:,} marked sent, RSS {r['rss']}"
    )
    return r


def _delivery_figure(name: str, runs: list[dict], base: list[dict], base_name: str, bar):
    """Ours against one baseline: min_ratio with no bar shows the ratio
    without a verdict."""
    return Figure(
        name,
        "mails/s",
        median([r["rate"] for r in runs]),
        median([r["rate"] for r in base]),
        baseline_name=base_name,
        kind="min_ratio",
        bar=bar,
        p50_ms=median([r["p50_ms"] for r in runs]),
        p99_ms=median([r["p99_ms"] for r in runs]),
        base_p50_ms=median([r["p50_ms"] for r in base]),
        base_p99_ms=median([r["p99_ms"] for r in base]),
        errors=sum(r["errors"] for r in runs),
        base_errors=sum(r["errors"] for r in base),
        note="latency: time between mails on one SMTP connection",
        rounds=[
            (round(b["rate"] or 0), round(o["rate"] or 0)) for b, o in zip(base, runs, strict=True)
        ],
    )


def delivery(ctx: Context) -> list[Figure]:
    """Ours against the previous release (the bar: at most 10% below it, per
    worker process) and against the smtplib loop (no bar), interleaved round
    by round: smtplib, previous release, then each of our setups."""
    n = ctx.mails
    db = _delivery_template(ctx, n)
    samples = ctx.scratch / "mail-samples"
    try:
        _samples(db, samples)
        smtplib_runs: list[dict] = []
        previous: list[dict] = []
        ours: dict[int, list[dict]] = {i: [] for i in range(len(DELIVERY_SETUPS))}
        with releases.worktree() as (tree, commit):
            log(f"  previous release: {commit} checked out in {tree}")
            for rnd in range(ctx.rounds):
                smtplib_runs.append(_drain_baseline(ctx, n, samples, rnd))
                previous.append(_drain_worker(ctx, db, n, PREVIOUS, "previous", rnd, tree))
                for i, side in enumerate(DELIVERY_SETUPS):
                    ours[i].append(_drain_worker(ctx, db, n, side, f"ours{i}", rnd, common.ROOT))
        smtplib_name = "smtplib loop, 1 connection"
        figures = [
            _delivery_figure(
                f"delivery, {n:,} mails, {DELIVERY_SETUPS[0].label}",
                ours[0],
                previous,
                f"previous release ({commit}), 1 process, 1 connection",
                0.9,
            )
        ]
        for i, side in enumerate(DELIVERY_SETUPS):
            figures.append(
                _delivery_figure(
                    f"delivery, {n:,} mails, {side.label}",
                    ours[i],
                    smtplib_runs,
                    smtplib_name,
                    None,
                )
            )
        figures.append(
            _delivery_figure(
                f"delivery, {n:,} mails, previous release ({commit}), 1 process, 1 connection",
                previous,
                smtplib_runs,
                smtplib_name,
                None,
            )
        )
        rss_runs = ours[0]
        if ctx.rss_mails and ctx.rss_mails != n:
            common.drop_database(db)
            db = _delivery_template(ctx, ctx.rss_mails)
            rss_runs = [
                _drain_worker(ctx, db, ctx.rss_mails, DELIVERY_SETUPS[0], "rss", 0, common.ROOT)
            ]
        rss = rss_runs[len(rss_runs) // 2]["rss"]
        growth = rss[2] - rss[0] if None not in rss else None
        count = ctx.rss_mails or n
        figures.append(
            Figure(
                f"worker RSS growth, 1/4 to end of {count:,} mails",
                "MB",
                growth,
                kind="max",
                bar=5,
                errors=sum(r["errors"] for r in rss_runs),
                note="VmRSS at 1/4, 1/2, end: "
                + ", ".join(f"{v:.1f}" for v in rss if v)
                + " MB (1 process, 1 connection)",
            )
        )
        return figures
    finally:
        common.drop_database(db)
        shutil.rmtree(samples, ignore_errors=True)


ALL = {
    "generate": generate,
    "signup": signup,
    "article": article,
    "export": export,
    "browse": browse,
    "fanout": fanout,
    "delivery": delivery,
    "compression": compression,
    "import": import_bench,
}
