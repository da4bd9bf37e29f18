"""Where gunicorn's workers keep their counts, so one scrape adds them up.

prometheus_client picks its multiprocess mode when it is first imported, by
the PROMETHEUS_MULTIPROC_DIR variable: this module must not import it at the
top, and `configure` runs before anything that does (app.py, gunicorn.conf.py).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
# What gunicorn's arbiter puts in the environment of the master and workers.
_GUNICORN = "gunicorn/"


def default_directory(instance_path: str | Path) -> Path:
    return Path(instance_path) / "prometheus"


def under_gunicorn() -> bool:
    return os.environ.get("SERVER_SOFTWARE", "").startswith(_GUNICORN)


def configure(instance_path: str | Path, testing: bool) -> None:
    """In a gunicorn worker, count in the shared directory (the one given,
    else instance/prometheus). Other processes (flask run, flask worker, the
    test client) count in memory and are scraped on their own."""
    if ENV in os.environ:
        Path(os.environ[ENV]).mkdir(parents=True, exist_ok=True)
        return
    if testing or not under_gunicorn():
        return
    directory = default_directory(instance_path)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(directory)


def start_master(default: str | Path) -> Path:
    """At gunicorn's master start: the directory (the one given, else
    `default`), emptied, since files of processes that are gone would still
    be added up. Set for the workers the master forks."""
    directory = Path(os.environ.setdefault(ENV, str(default)))
    directory.mkdir(parents=True, exist_ok=True)
    # Only prometheus_client's own files: the directory may be one given.
    for stale in directory.glob("*.db"):
        stale.unlink()
    return directory


def worker_exited(pid: int) -> None:
    """gunicorn's child_exit: the dead worker's live gauges go (its counters
    stay, so totals never drop)."""
    from prometheus_client import multiprocess

    if ENV in os.environ:
        multiprocess.mark_process_dead(pid)


def enabled() -> bool:
    return ENV in os.environ
