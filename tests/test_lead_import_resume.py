"""`flask leads import` killed with SIGKILL part-way, as a real process on a
migrated database: only whole batches are left (leads, consent events and
the job's progress in one transaction each), a plain re-run is refused,
and --resume finishes from the last committed batch without duplicates.
The addresses are checked in a process of their own, which ends with the
importer. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import sys

from sqlalchemy import create_engine, text

from services.imports.jobs import BATCH_ROWS
from tests import procs

ROWS = 12 * BATCH_ROWS
BASIS = "Customers of the 2024 CRM list, opted in at checkout"


def test_killed_import_resumes_from_the_last_batch(tmp_path, empty_db_url):
    env = procs.app_env(tmp_path, empty_db_url)
    procs.flask_db_upgrade(env)
    csv_file = tmp_path / "crm.csv"
    with csv_file.open("w", newline="") as fh:
        fh.write("Email,First name,Last name\r\n")
        fh.writelines(f"lead{i}@example.com,First{i},Last{i}\r\n" for i in range(ROWS))
    args = ["leads", "import", str(csv_file), "--topic", "newsletter", "--consent", BASIS]
    engine = create_engine(empty_db_url)

    def scalar(sql: str) -> int:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar() or 0

    importer = procs.Proc(
        [sys.executable, "-m", "flask", "--app", "app", *args], env, tmp_path / "import.log"
    ).start()
    try:
        importer.wait_until(
            lambda: scalar("SELECT rows_done FROM lead_import") >= 2 * BATCH_ROWS,
            "two batches committed",
            timeout=120,
        )
        (checker,) = procs.child_pids(importer.pid)
        assert "-m services.imports.checking" in procs.cmdline(checker)
        os.kill(importer.pid, signal.SIGKILL)  # the importer alone: its checker must follow
        importer.popen.wait(timeout=10)
        assert procs.exited(checker, within=10), "the checking process outlived the importer"
    finally:
        importer.kill()

    done = scalar("SELECT rows_done FROM lead_import")
    assert 0 < done < ROWS and done % BATCH_ROWS == 0
    # Whole batches only: every committed row has its lead, topic and consent event.
    assert scalar("SELECT count(*) FROM lead") == done
    assert scalar("SELECT count(*) FROM consent_event") == done
    assert scalar("SELECT count(*) FROM lead_topic") == done

    refused = procs.flask(env, *args, check=False)
    assert refused.returncode != 0
    assert f"stopped after {done:,} rows" in refused.stderr + refused.stdout
    assert "--resume" in refused.stderr + refused.stdout

    resumed = procs.flask(env, *args, "--resume", timeout=300)
    assert f"new={ROWS} updated=0 unchanged=0 refused=0" in resumed.stdout, resumed.stdout
    assert scalar("SELECT count(*) FROM lead") == ROWS
    assert scalar("SELECT count(DISTINCT email) FROM lead") == ROWS
    assert scalar("SELECT count(*) FROM consent_event") == ROWS
    assert scalar("SELECT count(*) FROM lead_import") == 1
    assert scalar("SELECT rows_done FROM lead_import") == ROWS
    assert scalar("SELECT count(*) FROM lead_import WHERE status = 'done'") == 1
    engine.dispose()
