"""`flask serve` (what `make run` runs): one scrape of /metrics shows the
web workers' counts and those of the delivery worker it starts (mail sent,
SMTP errors), from one prometheus_client directory emptied once at its start.

Every exposition is read with prometheus_client's own parser."""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.metrics import multiproc
from tests import delivery_procs as dp
from tests import procs
from tests.helpers import ARTICLE_PATH, Visitor
from tests.test_metrics import samples, value

INSTANCE = procs.ROOT / "instance"  # Flask's instance folder, where the app is
SOURCE = ARTICLE_PATH.lstrip("/")
SEEDED = 3  # welcome mails queued before `flask serve` starts
SIGNUPS = 4  # each queues a confirmation mail
SEEDED_SENT = {"sent": SEEDED - 1, "failed": 1}  # the SMTP server refuses the first


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


@contextlib.contextmanager
def flask_serve(env: dict[str, str], port: int, log: Path) -> Iterator[procs.Server]:
    argv = [procs.PYTHON, "-m", "flask", "--app", "app", "serve", "--port", str(port)]
    server = procs.Server(argv, env, log, port)
    try:
        server.start()
        server.wait_healthy(60)
        yield server
    finally:
        server.stop(30)


def _scrape_once_sent(server: procs.Server, confirmations: int) -> dict:
    """Scrape until the worker has counted every confirmation mail (it counts
    right after the SMTP server's 250, so a little after the server has it)."""

    def counted() -> dict | None:
        found = samples(_get(server.url + "/metrics"))
        done = value(found, "leads_mail_sent_total", kind="confirmation") == confirmations
        return found if done else None

    return dp.wait_for(counted, 60, lambda: f"no count of the mail sent:\n{server.log()}", 0.2)


def _delivery_worker(server: procs.Server) -> int:
    """The pid of the `flask worker` that `flask serve` started (its other
    child is gunicorn's master)."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    workers = [
        int(pid)
        for pid in children
        if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    ]
    assert len(workers) == 1, children
    return workers[0]


@pytest.mark.parametrize("given", [False, True], ids=["instance-prometheus", "given-directory"])
def test_metrics_of_flask_serve_show_the_workers_mail_sent_and_smtp_errors(
    tmp_path, smtp_server, given
):
    """The mail queued before the start is sent while gunicorn's master
    starts: its counts survive it. A second run starts from zero. Without
    PROMETHEUS_MULTIPROC_DIR, the directory is this checkout's
    instance/prometheus, as under `make run` (the instance folder is fixed)."""
    url = dp.sqlite_url(tmp_path)
    dp.prepare_schema(url)
    engine = dp.engine_for(url)
    dp.seed(engine, SEEDED)
    smtp_server.replies = ["550 5.1.1 no such user"]
    counts_dir = tmp_path / "prometheus" if given else multiproc.default_directory(INSTANCE)
    directory = {"PROMETHEUS_MULTIPROC_DIR": counts_dir} if given else {}
    for run in range(2):
        port = procs.free_port()
        env = dp.worker_env(
            tmp_path,
            url,
            smtp_server,
            SITE_URL=f"http://127.0.0.1:{port}",
            FORM_MIN_SECONDS=0,
            **directory,
        )
        with flask_serve(env, port, tmp_path / f"serve-{run}.log") as server:
            if run == 0:  # the seeded mail goes first, so the 550 is one of them
                dp.wait_for(
                    lambda: dp.status_counts(engine) == SEEDED_SENT,
                    60,
                    lambda: f"seeded mail not sent: {dp.status_counts(engine)}\n{server.log()}",
                )
            for i in range(SIGNUPS):
                visitor = Visitor(server.url)
                visitor.read_article()
                assert visitor.sign_up(f"run{run}-{i}@example.com") == 303
            found = _scrape_once_sent(server, SIGNUPS)
            worker_pid = _delivery_worker(server)
        # Its counters stay after it exits (until the next start empties them).
        assert (counts_dir / f"counter_{worker_pid}.db").exists()
        welcome = SEEDED - 1 if run == 0 else 0
        assert value(found, "leads_mail_sent_total", kind="welcome") == welcome
        assert value(found, "leads_smtp_errors_total", error_class="5xx") == (1 if run == 0 else 0)
        assert value(found, "leads_smtp_errors_total", error_class="4xx") == 0
        # The web workers' own counts are in the same scrape.
        assert value(found, "leads_signups_total", source=SOURCE) == SIGNUPS
        latency = "leads_http_request_duration_seconds_count"
        assert value(found, latency, endpoint="subscriptions.subscribe") == SIGNUPS
    assert len(smtp_server.messages) == 2 * SIGNUPS + SEEDED - 1


def test_gunicorns_master_keeps_the_directory_flask_serve_emptied(tmp_path, monkeypatch):
    given = tmp_path / "given"
    monkeypatch.setenv(multiproc.ENV, str(given))
    monkeypatch.delenv(multiproc.PREPARED, raising=False)
    given.mkdir()
    (given / "counter_1.db").write_bytes(b"an earlier run's")
    # gunicorn alone (the variable set for it only): an earlier run's files go.
    assert multiproc.start_master(tmp_path / "default") == given
    assert not list(given.iterdir())

    env: dict[str, str] = {}
    served = multiproc.start_serve(env, tmp_path / "instance")
    assert served == tmp_path / "instance" / "prometheus"
    assert env[multiproc.ENV] == str(served)
    (served / "counter_2.db").write_bytes(b"the worker's, counting already")
    for name, setting in env.items():
        monkeypatch.setenv(name, setting)
    assert multiproc.start_master(tmp_path / "default") == served
    assert [p.name for p in served.iterdir()] == ["counter_2.db"]
