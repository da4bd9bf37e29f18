"""The import benchmark: `flask leads import` of a 1,000,000-row CSV file
against `flask leads generate 1000000`, each on a fresh migrated database,
in the same run (generate first, then import, round by round). Time is the
command's wall clock as a user runs it; peak RSS is the import process's
own maximum resident set (os.wait4's rusage of that child alone)."""

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


def timed(env: dict[str, str], *args: str) -> tuple[float, float]:
    """Run `flask ARGS`; its wall-clock seconds and peak RSS in MB."""
    start = time.monotonic()
    child = subprocess.Popen(
        [procs.PYTHON, "-m", "flask", "--app", "app", *args],
        cwd=procs.ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - start
    if child.returncode != 0:
        raise procs.ProcessFailed(f"flask {' '.join(args)} exited {child.returncode}")
    return seconds, usage.ru_maxrss / 1024  # KiB on Linux


def import_bench(ctx) -> list[Figure]:
    csv_file = write_file(ctx.scratch / "import-1m.csv")
    generated, imported, rss = [], [], []
    for rnd in range(ctx.rounds):
        db = common.fresh_database(ctx.scratch, "generate-base")
        try:
            seconds, _ = timed(common.env_for(ctx.scratch, db), "leads", "generate", str(ROWS))
            generated.append(seconds)
        finally:
            common.drop_database(db)
        db = common.fresh_database(ctx.scratch, "import")
        try:
            env = common.env_for(ctx.scratch, db)
            args = ("leads", "import", str(csv_file), "--topic", "cspo-classes")
            seconds, peak = timed(env, *args, "--consent", BASIS)
            leads = common.scalar(db, "SELECT count(*) FROM lead")
            if leads != ROWS:
                raise AssertionError(f"import made {leads} leads, not {ROWS}")
            imported.append(seconds)
            rss.append(peak)
        finally:
            common.drop_database(db)
        log(f"  round {rnd + 1}: generate {generated[-1]:.1f} s, import {seconds:.1f} s")
        log(f"  import peak RSS {peak:.0f} MB")
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
            rounds=list(zip(generated, imported, strict=True)),
        ),
        Figure(
            "import peak RSS",
            "MB",
            max(rss),
            kind="max",
            bar=150,
            note="the import process's own maximum resident set (os.wait4)",
        ),
    ]
