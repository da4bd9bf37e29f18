"""Where gunicorn's workers (and the worker `flask serve` starts) keep their
counts, so one scrape adds them up.

prometheus_client picks its multiprocess mode when it is first imported, by
the PROMETHEUS_MULTIPROC_DIR variable: this module must not import it at the
top, and `configure` runs before anything that does (app.py, gunicorn.conf.py).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
# Set by `flask serve` to the directory it emptied: its delivery worker may be
# counting there already, so gunicorn's master must not empty it again.
PREPARED = "LEADS_PROMETHEUS_DIR_PREPARED"
# What gunicorn's arbiter puts in the environment of the master and workers.
_GUNICORN = "gunicorn/"


def default_directory(instance_path: str | Path) -> Path:
    return Path(instance_path) / "prometheus"


def under_gunicorn() -> bool:
    return os.environ.get("SERVER_SOFTWARE", "").startswith(_GUNICORN)


def configure(instance_path: str | Path, testing: bool) -> None:
    """In a gunicorn worker, count in the shared directory (the one given,
    else instance/prometheus); any process given one counts there too (the
    worker `flask serve` starts). Other processes (flask run, flask worker,
    the test client) count in memory and are scraped on their own."""
    if ENV in os.environ:
        Path(os.environ[ENV]).mkdir(parents=True, exist_ok=True)
        return
    if testing or not under_gunicorn():
        return
    directory = default_directory(instance_path)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(directory)


def empty(directory: str | Path) -> Path:
    """The directory, made if need be, without the files of processes from an
    earlier run (they would be added up)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Only prometheus_client's own files: the directory may be one given.
    for stale in directory.glob("*.db"):
        stale.unlink()
    return directory


def start_master(default: str | Path) -> Path:
    """At gunicorn's master start: the directory (the one given, else
    `default`), emptied unless `flask serve` did it already. Set for the
    workers the master forks."""
    directory = Path(os.environ.setdefault(ENV, str(default)))
    if os.environ.get(PREPARED) == str(directory):
        directory.mkdir(parents=True, exist_ok=True)
        return directory
    return empty(directory)


def start_serve(environ: dict[str, str], instance_path: str | Path) -> Path:
    """At `flask serve` start, before it starts gunicorn and the delivery
    worker with `environ`: one directory for both (the one given, else
    instance/prometheus), emptied once, so /metrics also shows the worker's
    counts (mail sent, SMTP errors)."""
    directory = empty(environ.get(ENV) or default_directory(instance_path))
    environ[ENV] = str(directory)
    environ[PREPARED] = str(directory)
    return directory


def worker_exited(pid: int, directory: str | Path | None = None) -> None:
    """A process that counted in the directory (the one given, else this
    process's) has exited: gunicorn's child_exit, `flask serve` when its delivery
    worker ends. Its live gauges go (its counters stay, so totals never drop)."""
    from prometheus_client import multiprocess

    directory = directory or os.environ.get(ENV)
    if directory:
        multiprocess.mark_process_dead(pid, str(directory))


def enabled() -> bool:
    return ENV in os.environ
