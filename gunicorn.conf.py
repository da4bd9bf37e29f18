"""gunicorn's settings for this app, read from the working directory by
default (`flask serve` names it): the hooks that keep the Prometheus counts
of its workers together (services/metrics/multiproc.py)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# gunicorn loads this file before it puts the app's folder on sys.path.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.metrics import multiproc  # noqa: E402


def on_starting(server):
    # Flask's instance folder is ROOT/instance: the app's own default.
    multiproc.start_master(multiproc.default_directory(ROOT / "instance"))


def child_exit(server, worker):
    multiproc.worker_exited(worker.pid)
