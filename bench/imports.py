"""The import benchmark: `flask leads import` of a 1,000,000-row CSV file
against `flask leads generate 1000000`, each on a fresh migrated database,
in the same run (generate first, then import, round by round). Time is the
command's wall clock as a user runs it; peak RSS is the import process's
own maximum resident set (os.wait4's rusage of that child), and the
largest sum of its and its address-checking process's resident sets
(sampled from /proc every 50 ms)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from bench import common
from bench.common import Figure, log, median
from tests import procs

ROWS = 1_000_000
BASIS = "Bench: customers who opted in at checkout"


def write_file(path: Path, rows: int = ROWS) -> Path:
    """A CRM-style export: address, names, topics and a source per row."""
    if not path.exists():
        with path.open("w", encoding="utf-8", newline="") as fh:
            fh.write("Email,First name,Last name,Topics,Lead source\r\n")
            fh.writelines(
                f"customer{i}@example.com,Ann{i % 97},Smith{i % 89},newsletter,crm-2025\r\n"
                for i in range(rows)
            )
    return path


def timed(env: dict[str, str], *args: str) -> tuple[float, float, float, float]:
    """Run `flask ARGS`; its wall-clock seconds, peak RSS in MB, CPU seconds
    (user + system, its children's included: steadier than the clock on a
    shared machine) and the peak RSS of it and its children together."""
    start = time.monotonic()
    child = subprocess.Popen(
        [procs.PYTHON, "-m", "flask", "--app", "app", *args],
        cwd=procs.ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with common.RssSampler(lambda: [child.pid, *common.children(child.pid)]) as sampler:
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - start
    if child.returncode != 0:
        raise procs.ProcessFailed(f"flask {' '.join(args)} exited {child.returncode}")
    # ru_maxrss is in KiB on Linux
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, usage.ru_maxrss / 1024, cpu, sampler.peak_total() or 0.0


def import_bench(ctx) -> list[Figure]:
    csv_file = write_file(ctx.scratch / "import-1m.csv")
    generated, imported, rss, tree_rss, cpu = [], [], [], [], []
    for rnd in range(ctx.rounds):
        db = common.fresh_database(ctx.scratch, "generate-base")
        try:
            env = common.env_for(ctx.scratch, db)
            seconds, _, base_cpu, _ = timed(env, "leads", "generate", str(ROWS))
            generated.append(seconds)
        finally:
            common.drop_database(db)
        db = common.fresh_database(ctx.scratch, "import")
        try:
            env = common.env_for(ctx.scratch, db)
            args = ("leads", "import", str(csv_file), "--topic", "cspo-classes")
            seconds, peak, our_cpu, tree_peak = timed(env, *args, "--consent", BASIS)
            leads = common.scalar(db, "SELECT count(*) FROM lead")
            if leads != ROWS:
                raise AssertionError(f"import made {leads} leads, not {ROWS}")
            imported.append(seconds)
            rss.append(peak)
            tree_rss.append(tree_peak)
            cpu.append((base_cpu, our_cpu))
        finally:
            common.drop_database(db)
        log(f"  round {rnd + 1}: generate {generated[-1]:.1f} s, import {seconds:.1f} s")
        log(f"  import peak RSS {peak:.0f} MB, with its checking process {tree_peak:.0f} MB")
    return [
        Figure(
            "import of 1,000,000 CSV rows",
            "s",
            median(imported),
            median(generated),
            baseline_name="`flask leads generate 1000000`",
            kind="max_ratio",
            bar=2.0,
            note="`flask leads import` of a 60 MB CRM-style file, all rows valid and new",
            rounds=[(round(g, 1), round(i, 1)) for g, i in zip(generated, imported, strict=True)],
        ),
        Figure(
            "import of 1,000,000 CSV rows: CPU time",
            "s",
            median([ours for _, ours in cpu]),
            median([base for base, _ in cpu]),
            baseline_name="`flask leads generate 1000000`",
            kind="ratio",
            note="user + system seconds of each process and its children (os.wait4): "
            "what the import's two processes cost in all",
            rounds=[(round(b, 1), round(o, 1)) for b, o in cpu],
        ),
        Figure(
            "import peak RSS",
            "MB",
            max(rss),
            kind="max",
            bar=150,
            note="the import process's own maximum resident set (os.wait4)",
        ),
        Figure(
            "import peak RSS, with its checking process",
            "MB",
            max(tree_rss),
            kind="max",
            bar=150,
            note="the largest sum of both processes' resident sets, sampled every 50 ms",
        ),
    ]
