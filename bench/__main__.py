"""`make bench` / `python -m bench [NAME ...] [options]`.

Runs the benchmarks (all, or those named), prints the table and writes
bench/RESULTS.md (bench/RESULTS-postgresql.md when BENCH_DATABASE_URL or
DATABASE_URL points at PostgreSQL). A run of some benchmarks only writes
bench/.data/partial-RESULTS.md and leaves RESULTS.md alone. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import traceback
from datetime import UTC, datetime

from bench import benchmarks, common
from bench.common import BENCH, DATA, Figure, fmt_lat, fmt_num, log

METHOD = """\
## How each figure is measured

- Every ratio is against a baseline measured in the same run, on the same
  machine, interleaved round by round (baseline, ours, baseline, ours...);
  the figure is the median round. Latencies are the medians of each round's
  p50 and p99.
- Load comes from `bench/load.py`, a separate process (asyncio, raw sockets,
  loopback only), bounded in time and request count. Servers are gunicorn
  with 2 sync workers for ours and for every baseline, with the same
  settings; sync workers close the connection after each response, for both
  sides alike.
- **signup**: each load connection behaves as a browser: it first GETs
  the article once (not timed) for the signup form's hidden fields
  (placement, source, the signed time stamp) and keeps no cookie (the page
  sets none), then only its POSTs to `/subscribe` are timed, each with
  `Origin` set to the server's own origin (its `SITE_URL`) and `Referer` set
  to the article's URL. `SIGNUP_RATE_LIMIT` is lifted and
  `FORM_MIN_SECONDS=0`. Every answer must be a 303 with its lead row and
  confirmation mail row in the database; any other status, missing row or
  traceback in the server log is an error, on both sides. Baseline:
  `bench/baselines/signup_app.py` (Flask + Flask-SQLAlchemy,
  email-validator, lead + outbox row, commit). Each round starts on a fresh
  migrated database.
- **article**: anonymous GETs of `/cspo-certification-benefits` with a
  browser's User-Agent (so the view counter counts) and no cookie.
  Baseline: `bench/baselines/article_app.py`, a plain Flask view returning
  the bytes ours served, saved at bench time (checked byte for byte before
  the load; every response of either side must have the page's length).
  Checks on ours, each failure an error of the figure: the anonymous GET
  sets no cookie (none of the responses under load either), and a
  conditional GET with the ETag it returned is answered 304 with no body.
  **article conditional**: GETs with `If-None-Match` (that ETag), each to
  be a 304, against the same baseline's full 200s: what a returning
  reader's browser or a shared cache costs the server; no bar.
- **export**: `GET /marketing/leads.csv` signed in as a marketer vs
  `bench/baselines/export_app.py`, a bare Flask streamed response of the same
  query (same columns, order and topics via group_concat) written by
  `csv.writer` over a DB-API cursor: both over HTTP from gunicorn, read by
  the same raw-socket client to the end. First byte: from sending the
  request to the first byte of the response. Peak RSS: VmHWM of the
  gunicorn worker that served it (fresh server each round), sampled VmRSS
  alongside.
- **lead list / dashboard**: sequential GETs signed in, 3 warm-up requests
  then the median of 25.
- **compression**: the article GETs/s with `Accept-Encoding: br` and `gzip`
  vs the same server's plain GETs, rounds in turns (the page cache keeps a
  copy per coding); in process, a render plus brotli or gzip vs a render
  alone, the cache emptied before each GET (the cost once per period).
- **fan-out**: `services.campaigns.announcements.fan_out()` + commit in-process vs one
  raw `INSERT INTO outbox_message ... SELECT ... FROM lead JOIN lead_topic`
  + commit on a DB-API connection, on the same database, to exactly 200,000
  confirmed leads who want the topic; the rows are deleted between runs.
- **delivery**: `flask worker --once` with `MAIL_BACKEND=smtp` drains N
  queued rows (half welcome, half announcement: claim, send-time checks,
  render, SMTP, bookkeeping) into a local aiosmtpd server in its own
  process. Two baselines in the same rounds: the previous release's worker
  (`bench/releases.py` checks its commit out as a git worktree for the run,
  and runs its `flask worker --once` from there with the same venv,
  database and settings), which the bar is against, and
  `bench/baselines/smtp_loop.py`, a raw smtplib loop on one connection
  sending messages our app composed, serialised before its clock starts.
  "2 worker processes" is two `flask worker --once` commands at once, as a
  process manager runs them. Rate: mails received by the server, first to
  last. Latency: time between consecutive mails on one connection. Worker
  RSS is sampled every 0.1 s; the values at 1/4, 1/2 and the end of the
  drain are read at the moments the server had received those shares.
- **generate**: `flask leads generate 1000000` on a freshly migrated
  database, timed as a user runs it. Data is cached in `bench/.data/` keyed
  by a hash of the code that shapes it; a cached figure is the one measured
  when it was made.
- **import**: `flask leads import` of a 1,000,000-row CSV file (every row
  valid and new) and `flask leads generate 1000000`, each on a fresh
  migrated database, in the same round; wall clock, the import's own peak
  RSS and both CPU times from `os.wait4`.
"""


def table(figures: list[Figure]) -> list[str]:
    head = (
        "| figure | ours | baseline | ratio | bar | pass | ours p50 / p99 ms |"
        " baseline p50 / p99 ms | errors (ours / baseline) | notes |"
    )
    rows = [head, "|" + "---|" * 10]
    for f in figures:
        ratio = f.ratio_text()
        passed = {True: "PASS", False: "FAIL", None: "-"}[f.passed]
        errors = (
            "-"
            if f.errors is None
            else f"{f.errors} / {'-' if f.base_errors is None else f.base_errors}"
        )
        baseline = fmt_num(f.baseline, f.unit)
        if f.baseline is not None and f.baseline_name not in ("-", "same"):
            baseline += f" ({f.baseline_name})"
        note = f.note
        if f.rounds:
            note += (
                ("; " if note else "")
                + "rounds (baseline, ours): "
                + ", ".join(f"({b}, {o})" for b, o in f.rounds)
            )
        rows.append(
            f"| {f.name} | {fmt_num(f.ours, f.unit)} | {baseline} | {ratio} | {f.bar_text()} |"
            f" {passed} | {fmt_lat(f.p50_ms, f.p99_ms)} | {fmt_lat(f.base_p50_ms, f.base_p99_ms)} |"
            f" {errors} | {note} |"
        )
    return rows


def _n(v) -> str:
    return "-" if v is None else str(v)


def console_table(figures: list[Figure]) -> str:
    lines = []
    w = max((len(f.name) for f in figures), default=10)
    lines.append(
        f"{'figure':<{w}}  {'ours':>14}  {'baseline':>14}  {'ratio':>7}  {'bar':>12}  "
        f"{'pass':>4}  {'p50/p99 ms':>15}  {'base p50/p99':>15}  err"
    )
    for f in figures:
        ratio = f.ratio_text()
        passed = {True: "PASS", False: "FAIL", None: "-"}[f.passed]
        lines.append(
            f"{f.name:<{w}}  {fmt_num(f.ours, f.unit):>14}  {fmt_num(f.baseline, f.unit):>14}  "
            f"{ratio:>7}  {f.bar_text():>12}  {passed:>4}  {fmt_lat(f.p50_ms, f.p99_ms):>15}  "
            f"{fmt_lat(f.base_p50_ms, f.base_p99_ms):>15}  "
            f"{_n(f.errors)}/{_n(f.base_errors)}"
        )
    return "\n".join(lines)


def findings(path) -> str:
    """The hand-written part of an existing results file, kept across runs."""
    if not path.exists():
        return "## Findings\n\n(none yet)\n"
    text = path.read_text()
    at = text.find("## Findings")
    return text[at:] if at >= 0 else "## Findings\n\n(none yet)\n"


def write_results(path, figures, ctx, names, started, seconds, database) -> None:
    m = common.machine()
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m bench`); the Findings section at the end is"
        ' kept across runs. The bars are those of bench/README.md, "Quality bars".',
        "",
        f"- date: {started.isoformat(timespec='seconds')}, whole run {seconds / 60:.1f} min",
        f"- machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory']} RAM, {m['os']},"
        f" load average at the end {m['load']} (the CPUs are shared with other work)",
        f"- Python {m['python']}, SQLite {m['sqlite']}; database: {database}",
        f"- benchmarks: {', '.join(names)}; {ctx.rounds} rounds of {ctx.duration:g} s"
        f" (+{ctx.warmup:g} s warm-up) per throughput measurement, {ctx.connections}"
        f" connections; delivery drains of {ctx.mails:,} mails",
        "",
        *table(figures),
        "",
        METHOD,
        findings(path),
    ]
    path.write_text("\n".join(lines).rstrip() + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"some of: {', '.join(benchmarks.ALL)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per load run")
    parser.add_argument("--connections", type=int, default=6)
    parser.add_argument("--mails", type=int, default=1500, help="mails per delivery drain")
    parser.add_argument(
        "--rss-mails",
        type=int,
        default=0,
        help="a separate longer drain for the worker RSS figure (e.g. 100000)",
    )
    args = parser.parse_args(argv)
    names = args.names or list(benchmarks.ALL)
    unknown = [n for n in names if n not in benchmarks.ALL]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(benchmarks.ALL)}")

    scratch = DATA / f"run-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    ctx = benchmarks.Context(
        scratch=scratch,
        rounds=args.rounds,
        duration=args.duration,
        connections=args.connections,
        mails=args.mails,
        rss_mails=args.rss_mails,
    )
    pg = common.pg_base_url()
    database = f"PostgreSQL ({pg.split('@')[-1]})" if pg else "SQLite (WAL)"
    started = datetime.now(UTC)
    t0 = time.monotonic()
    figures: list[Figure] = []
    failed = False
    log(f"benchmarks {names} on {database}; scratch {scratch}")
    try:
        for name in names:
            log(f"{name} ...")
            t = time.monotonic()
            try:
                figures.extend(benchmarks.ALL[name](ctx))
            except Exception:
                failed = True
                traceback.print_exc()
                figures.append(
                    Figure(
                        f"{name}: did not finish",
                        "",
                        None,
                        kind="max",
                        bar=0,
                        note=traceback.format_exc().strip().splitlines()[-1][:200],
                    )
                )
            log(f"{name} took {time.monotonic() - t:.0f} s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.monotonic() - t0

    print()
    print(console_table(figures))
    print(f"\nwhole run: {seconds / 60:.1f} min")
    complete = names == list(benchmarks.ALL)
    name = "RESULTS-postgresql.md" if pg else "RESULTS.md"
    path = BENCH / name if complete else DATA / f"partial-{name}"
    if not complete:
        # Keep the findings of the real results file in the partial one.
        src = BENCH / name
        if src.exists() and not path.exists():
            path.write_text(src.read_text())
    write_results(path, figures, ctx, names, started, seconds, database)
    print(f"written: {path.relative_to(common.ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
