"""Profile one benchmark's hot path in-process with cProfile (no server).

    python -m bench.profile signup|article|delivery|export [--sort tottime] [--top 40]

signup and article drive the app through Flask's test client (so gunicorn's
own cost is left out); delivery runs Worker.run(once=True) against the bench's
SMTP sink; export iterates services.reporting.export.iter_csv over the cached
1,000,000 leads (the first 200,000 rows). Prints the time per request, mail
or row without the profiler, then the profile. For a profile of the real
gunicorn processes under load, run py-spy against them, e.g.
`py-spy record -p <gunicorn master pid> --subprocesses -f raw -o out.txt`.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import time
from pathlib import Path

from bench import benchmarks, common, data


def _app(scratch: Path, db: common.Database, **settings):
    os.environ.update(common.env_for(scratch, db, **settings))
    from app import create_app

    return create_app()


def _timed(fn, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n * 1000


def signup(scratch: Path, n: int):
    app = _app(scratch, common.fresh_database(scratch, "profile_signup"))
    client = app.test_client(use_cookies=False)  # as the bench's browsers: no cookie
    html = client.get(benchmarks.ARTICLE, headers={"User-Agent": common.UA}).get_data(True)
    fields = common.signup_fields(html)
    site = app.config["SITE_URL"]
    headers = {"User-Agent": common.UA, "Origin": site, "Referer": site + benchmarks.ARTICLE}

    def post(i: int) -> None:
        form = {**fields, "email": f"lead{i}@example.com", "name": "", "topics": "cspo-classes"}
        r = client.post("/subscribe", data=form, headers=headers)
        assert r.status_code == 303, r.status_code

    _timed(post, 50)  # warm up
    per = _timed(lambda i: post(100_000 + i), n)
    return per, "ms per signup", lambda: [post(200_000 + i) for i in range(n)]


def article(scratch: Path, n: int):
    app = _app(scratch, common.fresh_database(scratch, "profile_article"))
    client = app.test_client(use_cookies=False)

    def get(_i: int) -> None:
        r = client.get(benchmarks.ARTICLE, headers={"User-Agent": common.UA})
        assert r.status_code == 200

    _timed(get, 50)
    return _timed(get, n), "ms per GET", lambda: [get(i) for i in range(n)]


def export(scratch: Path, n: int):
    app = _app(scratch, data.million().db)
    from services.reporting import export as export_service
    from services.reporting.lead_query import LeadFilters

    def rows(limit: int) -> None:
        with app.app_context():
            for chunks, _ in enumerate(export_service.iter_csv(LeadFilters()), 1):
                if chunks * export_service.ROWS_PER_CHUNK >= limit:
                    break

    start = time.perf_counter()
    rows(n)
    per = (time.perf_counter() - start) / n * 1_000_000
    return per, "µs per row", lambda: rows(n)


def delivery(scratch: Path, n: int):
    ctx = benchmarks.Context(scratch=scratch)
    db = benchmarks._delivery_template(ctx, n)

    def drain(profile: bool) -> float:
        """Worker.run(once=True) over the n queued mails; ms per mail."""
        from services.delivery.worker import Worker

        benchmarks._reset_queue(db)
        with benchmarks._sink(ctx, "profile") as (port, _sink):
            app = _app(
                scratch,
                db,
                MAIL_BACKEND="smtp",
                MAIL_SERVER="127.0.0.1",
                MAIL_PORT=port,
                SITE_URL="http://127.0.0.1:5000",
            )
            worker = Worker(app)
            start = time.perf_counter()
            if profile:
                PROFILER.enable()
            total = worker.run(once=True)
            if profile:
                PROFILER.disable()
            return (time.perf_counter() - start) / max(total.sent, 1) * 1000

    # The profiled drain enables the profiler itself: set-up stays out of it.
    return drain(False), "ms per mail", lambda: drain(True)


PROFILER = cProfile.Profile()
TARGETS = {"signup": (signup, 500), "article": (article, 500), "delivery": (delivery, 2000),
           "export": (export, 200_000)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--top", type=int, default=50)
    parser.add_argument("-n", type=int, help="requests, mails or rows")
    args = parser.parse_args()
    fn, default_n = TARGETS[args.target]
    scratch = common.DATA / f"profile-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        per, unit, run = fn(scratch, args.n or default_n)
        print(f"{args.target}: {per:.3f} {unit} (without the profiler)")
        if args.target == "delivery":
            run()
        else:
            PROFILER.enable()
            run()
            PROFILER.disable()
        out = io.StringIO()
        pstats.Stats(PROFILER, stream=out).sort_stats(args.sort).print_stats(args.top)
        print(out.getvalue())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
