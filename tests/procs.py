"""Real processes for tests: gunicorn, the Flask CLI, the delivery worker.

Every long-running process is started in its own session (process group), so
stopping it also stops its children (gunicorn's workers), and its output goes
to a log file that failing tests show. Use the context managers: they stop
what they started even when the test fails.

    env = app_env(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}")
    flask_db_upgrade(env)
    with gunicorn(env, workers=2) as server:
        urlopen(server.url + "/healthz")
    worker_once(env)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
# The interpreter running the tests is the project's venv (make test).
PYTHON = sys.executable

# Settings a developer's .env or shell could hold that would change what a
# test measures (load_dotenv never overrides what the environment sets).
_APP_SETTINGS = (
    "SECRET_KEY",
    "SECRET_KEY_FALLBACKS",
    "DATABASE_URL",
    "SITE_URL",
    "MAIL_BACKEND",
    "MAIL_FILE_DIR",
    "MAIL_SERVER",
    "MAIL_PORT",
    "MAIL_USE_TLS",
    "MAIL_USE_SSL",
    "MAIL_USERNAME",
    "MAIL_PASSWORD",
    "MAIL_BOUNCE_ADDRESS",
    "BOUNCE_LOCAL",
    "BOUNCE_DOMAIN",
    "BOUNCE_IMAP_HOST",
    "BOUNCE_IMAP_PORT",
    "BOUNCE_IMAP_USER",
    "BOUNCE_IMAP_PASSWORD",
    "BOUNCE_IMAP_FOLDER",
    "BOUNCE_IMAP_CA_FILE",
    "BOUNCE_IMAP_AFTER",
    "RATELIMIT_STORAGE_URI",
    "SIGNUP_RATE_LIMIT",
    "FORM_MIN_SECONDS",
    "TRUSTED_PROXY_COUNT",
    "FLASK_DEBUG",
    "DKIM_DOMAIN",
    "DKIM_SELECTOR",
    "DKIM_PRIVATE_KEY_FILE",
    "METRICS_ALLOWED_IPS",
    "METRICS_TOKEN",
    # Each gunicorn counts in a directory of its own (gunicorn() below), never
    # in one that another test's gunicorn master empties at its start.
    "PROMETHEUS_MULTIPROC_DIR",
)


class ProcessFailed(RuntimeError):
    pass


def app_env(
    tmp_path: Path, database_url: str, *, port: int | None = None, **settings: object
) -> dict[str, str]:
    """An environment for the app's processes: embedded mode in tmp_path.

    `settings` override the defaults (MAIL_BACKEND="smtp", FORM_MIN_SECONDS=0...).
    SITE_URL follows `port` when given, so links in mail reach the server.
    """
    env = {k: v for k, v in os.environ.items() if k not in _APP_SETTINGS}
    env.update(
        {
            "SECRET_KEY": "procs-test-secret",
            "DATABASE_URL": database_url,
            "MAIL_BACKEND": "file",
            "MAIL_FILE_DIR": str(tmp_path / "mail"),
            "RATELIMIT_STORAGE_URI": "memory://",
            "SIGNUP_RATE_LIMIT": "10000 per minute",
            "WORKER_POLL_SECONDS": "0.1",
            "MAIL_TIMEOUT": "5",
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "WARNING",
        }
    )
    if port is not None:
        env["SITE_URL"] = f"http://127.0.0.1:{port}"
    env.update({k: str(v) for k, v in settings.items()})
    return env


# --- One-shot commands.


def flask(
    env: Mapping[str, str], *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess:
    """`flask --app app ARGS` with env, from the repository root."""
    result = subprocess.run(
        [PYTHON, "-m", "flask", "--app", "app", *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise ProcessFailed(
            f"flask {' '.join(args)} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


def flask_db_upgrade(env: Mapping[str, str]) -> None:
    flask(env, "db", "upgrade")


def worker_once(env: Mapping[str, str], timeout: float = 120) -> dict[str, int]:
    """Drain what is due; returns the counts it printed (sent, retried...)."""
    out = flask(env, "worker", "--once", timeout=timeout).stdout
    counts = [line for line in out.splitlines() if line.startswith("sent=")]
    if not counts:
        raise ProcessFailed(f"flask worker --once printed no counts:\n{out}")
    return {k: int(v) for k, v in (pair.split("=") for pair in counts[-1].split())}


# --- Long-running processes.


class Proc:
    """A process in its own process group, output in a log file."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path):
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = Path(log_path)
        self.popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    def wait_until(
        self,
        answers: Callable[[], bool],
        what: str,
        timeout: float = 30.0,
        details: Callable[[], str] = str,
    ) -> None:
        """Poll `answers` (an OSError counts as not yet) until it is true;
        ProcessFailed with the logs if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        last_error: object = None
        while True:
            if not self.alive():
                raise ProcessFailed(
                    f"{what}: the process exited with {self.popen.returncode}:\n"
                    f"{self.log()}\n{details()}"
                )
            try:
                if answers():
                    return
            except OSError as exc:
                last_error = exc
            if time.monotonic() > deadline:
                raise ProcessFailed(
                    f"{what} did not answer ({last_error}):\n{self.log()}\n{details()}"
                )
            time.sleep(0.1)

    def signal(self, sig: int) -> None:
        """Send sig to the whole group (the process and its children)."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL, no chance to clean up: what a crash looks like."""
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout=10)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait up to grace seconds, then SIGKILL. Safe to call twice."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        # Whatever is left of the group (a worker the master lost) goes too.
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        return self.popen.returncode


def child_pids(pid: int) -> list[int]:
    """The processes pid started that are still there."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except FileNotFoundError:
        return ""


def exited(pid: int, within: float) -> bool:
    """pid has exited within that many seconds (an orphan's zombie counts)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


class Server(Proc):
    def __init__(self, argv, env, log_path, port: int):
        super().__init__(argv, env, log_path)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def wait_healthy(self, timeout: float = 30.0) -> None:
        def healthy() -> bool:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                return r.status == 200

        self.wait_until(healthy, f"{self.url}/healthz", timeout)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gunicorn(
    env: Mapping[str, str],
    *,
    workers: int = 2,
    port: int | None = None,
    log_path: Path | None = None,
    extra_args: Sequence[str] = (),
    app_spec: str = "app:create_app()",
    health_timeout: float = 30.0,
) -> Iterator[Server]:
    """gunicorn serving app_spec (ours, or a benchmark's baseline) on
    127.0.0.1:port, healthy on entry.

    When env has no SITE_URL, it is set to the server's address. The server
    is stopped on exit, however the block ends; on failure its log is in the
    exception.
    """
    port = port or _port_from_site_url(env) or free_port()
    env = dict(env)
    env.setdefault("SITE_URL", f"http://127.0.0.1:{port}")
    beside = Path(env.get("MAIL_FILE_DIR", ROOT / "instance")).parent
    log_path = log_path or beside / f"gunicorn-{port}.log"
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(beside / f"prometheus-{port}"))
    argv = [
        PYTHON,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        # No control socket: its default path is one per user, shared by
        # every gunicorn on the machine (parallel test runs, make run).
        "--no-control-socket",
        "--graceful-timeout",
        "5",
        *extra_args,
        app_spec,
    ]
    server = Server(argv, env, log_path, port)
    try:
        server.start()
        server.wait_healthy(health_timeout)
        yield server
    finally:
        server.stop()


def _port_from_site_url(env: Mapping[str, str]) -> int | None:
    from urllib.parse import urlsplit

    site = env.get("SITE_URL")
    if not site:
        return None
    parts = urlsplit(site)
    return parts.port if parts.hostname == "127.0.0.1" else None


def worker_proc(env: Mapping[str, str], log_path: Path, *args: str) -> Proc:
    """`flask worker ARGS` (e.g. "--once") as a Proc, not started yet."""
    return Proc([PYTHON, "-m", "flask", "--app", "app", "worker", *args], env, log_path)


# What `flask worker` prints once its SIGTERM handler is installed (commands.py).
# A SIGTERM before that line kills it (exit -15) instead of stopping it.
WORKER_READY = "delivering with MAIL_BACKEND="


def wait_worker_ready(proc: Proc, timeout: float = 60.0) -> None:
    """Wait until a `flask worker` process is ready to stop gracefully."""
    deadline = time.monotonic() + timeout
    while WORKER_READY not in _log_head(proc):
        if not proc.alive():
            raise ProcessFailed(f"worker exited with {proc.popen.returncode}:\n{proc.log()}")
        if time.monotonic() > deadline:
            raise ProcessFailed(f"worker not ready after {timeout:.0f}s:\n{proc.log()}")
        time.sleep(0.02)


def _log_head(proc: Proc, size: int = 1 << 16) -> str:
    """The start of a log (where start-up lines are), however long it grew."""
    try:
        with proc.log_path.open("rb") as f:
            return f.read(size).decode(errors="replace")
    except FileNotFoundError:
        return ""


@contextlib.contextmanager
def worker(env: Mapping[str, str], log_path: Path | None = None) -> Iterator[Proc]:
    """`flask worker` running forever until the block ends (or .kill())."""
    log_path = log_path or Path(env.get("MAIL_FILE_DIR", ROOT / "instance")).parent / (
        f"worker-{uuid.uuid4().hex[:6]}.log"
    )
    proc = worker_proc(env, log_path)
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


# --- Databases.


@contextlib.contextmanager
def pg_schema(base_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema; yields a URL whose search_path is it.

    The schema is dropped afterwards. Raises if PostgreSQL does not answer;
    callers turn that into require_service().
    """
    schema = f"p_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in base_url else "?"
        try:
            yield f"{base_url}{sep}options=-csearch_path%3D{schema}"
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()
