"""What compression costs: the article served brotli, gzip and plain, in one run.

    python -m bench compression --rounds 3

Two kinds of figure, each a ratio of two measurements taken in turns in the
same run:

- over HTTP (gunicorn, 2 sync workers, as the article benchmark): anonymous
  GETs/s of the article with `Accept-Encoding: br` and with `gzip`, against
  the same server's plain GETs. The public page cache keeps one compressed
  copy per coding, so these show what serving a compressed page costs once
  it is compressed (a smaller write, nothing more);
- in process (Flask's test client, the page cache emptied before every GET,
  as after each 2-second stamp period): a render plus brotli, and a render
  plus gzip, against a render alone: what compressing once per period costs
  on top of the render it follows, the cost a staff page (never cached) pays
  on each request.
"""

from __future__ import annotations

import gzip
import tempfile
import timeit
from pathlib import Path

import brotli

from bench import common
from bench.common import Figure, log, median

ARTICLE = "/cspo-certification-benefits"
CODINGS = ("br", "gzip")


def _load(ctx, port: int, coding: str | None, rnd: int) -> dict:
    headers = {"Accept-Encoding": coding} if coding else {}
    r = common.run_load(
        {
            "port": port,
            "connections": ctx.connections,
            "warmup": ctx.warmup,
            "duration": ctx.duration,
            "max_requests": 1_000_000,
            "clients": [
                {
                    "method": "GET",
                    "path": ARTICLE,
                    "headers": headers,
                    "user_agent": common.UA,
                    "expect": [200],
                    "forbid_headers": ["set-cookie"],
                }
            ],
        }
    )
    log(f"  article {coding or 'plain'} round {rnd}: {r['rps']:.0f}/s errors {r['errors']}")
    return r


def _sizes(port: int) -> tuple[dict[str, int], int]:
    """Bytes on the wire per coding, and how many copies failed to decode to the page."""
    status, _, plain = common.get(port, ARTICLE)
    if status != 200:
        raise RuntimeError(f"GET {ARTICLE} answered {status}")
    sizes, failed = {"plain": len(plain)}, 0
    decode = {"br": brotli.decompress, "gzip": gzip.decompress}
    for coding in CODINGS:
        _, headers, body = common.get(port, ARTICLE, {"Accept-Encoding": coding})
        sizes[coding] = len(body)
        # Same length: the copies differ in the form's time stamp at most.
        if headers.get("content-encoding") != [coding] or len(decode[coding](body)) != len(plain):
            failed += 1
    return sizes, failed


def _over_http(ctx) -> list[Figure]:
    db = common.fresh_database(ctx.scratch, "compression")
    try:
        env = common.env_for(ctx.scratch, db)
        with common.serve(env, "app:create_app()", ctx.scratch, tag="compression") as srv:
            sizes, failed = _sizes(srv.port)
            runs: dict[str, list[dict]] = {"plain": [], "br": [], "gzip": []}
            for rnd in range(ctx.rounds):
                for coding in runs:
                    runs[coding].append(
                        _load(ctx, srv.port, None if coding == "plain" else coding, rnd)
                    )
            tracebacks = srv.log(tail=200_000).count("Traceback")
    finally:
        common.drop_database(db)
    figures = []
    for coding in CODINGS:
        ours, base = runs[coding], runs["plain"]
        fig = Figure(
            f"article GETs/s, {coding} (cached copy) vs plain",
            "req/s",
            median([r["rps"] for r in ours]),
            median([r["rps"] for r in base]),
            baseline_name="the same server, no Accept-Encoding",
            kind="ratio",
            p50_ms=median([r["p50_ms"] for r in ours]),
            p99_ms=median([r["p99_ms"] for r in ours]),
            base_p50_ms=median([r["p50_ms"] for r in base]),
            base_p99_ms=median([r["p99_ms"] for r in base]),
            errors=sum(r["errors"] for r in ours) + failed + tracebacks,
            base_errors=sum(r["errors"] for r in base),
            rounds=[(round(b["rps"]), round(o["rps"])) for b, o in zip(base, ours, strict=True)],
            note=f"{sizes[coding]:,} bytes on the wire instead of {sizes['plain']:,}",
        )
        figures.append(fig)
    return figures


def _in_process(ctx) -> list[Figure]:
    from app import create_app
    from extensions import db

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "TESTING": True,
                "SECRET_KEY": "bench",
                "SITE_URL": "http://localhost",
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{Path(tmp) / 'bench.sqlite3'}",
            }
        )
        with app.app_context():
            db.create_all()
        client = app.test_client()
        cache = app.extensions["public_pages"]

        def uncached(coding: str | None):
            headers = {"Accept-Encoding": coding} if coding else {}

            def get():
                cache.clear()
                client.get(ARTICLE, headers=headers)

            return get

        number = 50
        best: dict[str, list[float]] = {"plain": [], "br": [], "gzip": []}
        for _ in range(max(ctx.rounds, 3)):  # in turns, the best of each
            for coding in best:
                fn = uncached(None if coding == "plain" else coding)
                best[coding].append(timeit.timeit(fn, number=number) / number * 1e3)
        with app.app_context():
            db.engine.dispose()
    plain = min(best["plain"])
    log(
        f"  in process: render {plain:.2f} ms,"
        f" +br {min(best['br']):.2f}, +gzip {min(best['gzip']):.2f}"
    )
    return [
        Figure(
            f"article render + {coding} vs render alone (in process, uncached)",
            "ms",
            min(best[coding]),
            plain,
            baseline_name="render alone",
            kind="ratio",
            note="paid once per 2 s stamp period per coding for a public page;"
            " per request for staff pages",
        )
        for coding in CODINGS
    ]


def compression(ctx) -> list[Figure]:
    return [*_over_http(ctx), *_in_process(ctx)]
