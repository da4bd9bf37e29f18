"""The other end of delivery: SMTP servers on loopback (the Recorder behind
the smtp_server fixture, a timestamping one, one that never answers), fast
seeding of leads and outbox rows, and polling with deadlines.

The app's own processes (gunicorn, the worker) are started with tests.procs.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

from sqlalchemy import Engine, create_engine, insert, text

from app import create_app
from extensions import db
from models import Lead, LeadTopic, OutboxMessage
from tests import procs
from tests.helpers import smtp_settings

LEAD = Lead.__table__
LEAD_TOPIC = LeadTopic.__table__
OUTBOX = OutboxMessage.__table__


# --- SMTP


class Recorder:
    """aiosmtpd handler that keeps every message and can be told to refuse."""

    def __init__(self):
        self.messages: list = []
        self.lock = threading.Lock()
        # A list of SMTP replies for the next DATA commands ("421 ...", "550 ...");
        # when empty, every message is accepted with 250.
        self.replies: list[str] = []
        self.hang_seconds: float = 0
        # The bytes as received, beside each parsed message (a DKIM check
        # needs them untouched).
        self.raw_messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):
        if self.hang_seconds:
            await asyncio.sleep(self.hang_seconds)
        with self.lock:
            if self.replies:
                reply = self.replies.pop(0)
                if not reply.startswith("250"):
                    return reply
            self.accept(envelope)
        return "250 Message accepted for delivery"

    def accept(self, envelope) -> None:
        """Keep a message answered with 250 (called holding the lock)."""
        msg = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        self.raw_messages.append(envelope.original_content)


@contextlib.contextmanager
def smtp_on_loopback(handler, **controller_options) -> Iterator:
    """aiosmtpd serving handler on a free port of 127.0.0.1, which it notes
    in handler.host and handler.port; stopped when the block ends."""
    from aiosmtpd.controller import Controller

    port = procs.free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **controller_options)
    controller.start()
    handler.host, handler.port = "127.0.0.1", port
    try:
        yield handler
    finally:
        controller.stop()


class TimedRecorder(Recorder):
    """Recorder that stamps each message with time.monotonic() on receipt.

    `keep_messages=False` records only the envelope (no MIME parsing), which
    keeps aiosmtpd fast enough for thousands of mails a second. `hold_first`
    makes the first DATA wait until `release_first` is set, with
    `first_arrived` set as soon as the DATA is in: the sender is then known to
    be mid-send, waiting for the server's reply.
    """

    def __init__(
        self,
        keep_messages: bool = True,
        hold_first: bool = False,
        first_reply: str | None = None,
    ):
        super().__init__()
        self.keep_messages = keep_messages
        # The reply to the held first message (None: the usual rules apply).
        self.first_reply = first_reply
        # RCPT TO replies by address, e.g. {"x@example.com": "550 5.1.1 no such user"}.
        self.refuse_rcpt: dict[str, str] = {}
        # (monotonic time, rcpt, Message-ID) per message accepted with 250.
        self.receipts: list[tuple[float, str, str | None]] = []
        self.hold_first = hold_first
        self.first_arrived = threading.Event()
        self.release_first = threading.Event()
        self._datas = 0
        self.rcpt_calls = 0
        # When each DATA came in, accepted or not (to see retries' spacing).
        self.data_times: list[float] = []

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self._datas += 1
            first = self._datas == 1
            self.data_times.append(time.monotonic())
        if first and self.hold_first:
            self.first_arrived.set()
            while not self.release_first.is_set():
                await asyncio.sleep(0.01)
            if self.first_reply and not self.first_reply.startswith("250"):
                return self.first_reply
        return await super().handle_DATA(server, session, envelope)

    def accept(self, envelope) -> None:
        if self.keep_messages:
            super().accept(envelope)
        msg_id = _header(envelope.content, b"message-id")
        now = time.monotonic()
        for rcpt in envelope.rcpt_tos:
            self.receipts.append((now, rcpt, msg_id))

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            self.rcpt_calls += 1
        reply = self.refuse_rcpt.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    @property
    def data_calls(self) -> int:
        with self.lock:
            return self._datas

    def count(self) -> int:
        with self.lock:
            return len(self.receipts)

    def per_address(self) -> Counter:
        with self.lock:
            return Counter(rcpt for _, rcpt, _ in self.receipts)


def _header(content: bytes, name: bytes) -> str | None:
    head = content.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip().decode("ascii", "replace")
    return None


def _refuse_every_login(server, session, envelope, mechanism, auth_data):
    from aiosmtpd.smtp import AuthResult

    return AuthResult(success=False, handled=False)


@contextlib.contextmanager
def smtp_recorder(*, refuse_logins: bool = False, **kwargs) -> Iterator[TimedRecorder]:
    """A TimedRecorder on loopback; with refuse_logins every AUTH gets 535."""
    extra = {}
    if refuse_logins:
        extra = {"authenticator": _refuse_every_login, "auth_require_tls": False}
    recorder = TimedRecorder(**kwargs)
    with smtp_on_loopback(recorder, **extra):
        try:
            yield recorder
        finally:
            recorder.release_first.set()  # a held first DATA must not block the stop


class SilentFirstProxy:
    """A TCP server whose first `silent` connections are accepted and never
    answered (no greeting, nothing read); later connections are piped to
    `upstream` (the real SMTP server). Both behaviours are real sockets."""

    def __init__(self, upstream: tuple[str, int], silent: int = 1):
        self.upstream = upstream
        self.silent = silent
        self.accepted = 0
        self.held: list[socket.socket] = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.host, self.port = self._sock.getsockname()
        self._closing = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> SilentFirstProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        for s in self.held:
            with contextlib.suppress(OSError):
                s.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.silent:
                self.held.append(conn)  # keep it open; say nothing, read nothing
                continue
            try:
                up = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                conn.close()
                continue
            up.settimeout(None)
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


# --- Databases and data


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{(tmp_path / 'delivery.sqlite3').resolve()}"


def prepare_schema(url: str) -> None:
    """Create (SQLite) or empty (PostgreSQL) every table at url."""
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        db.create_all()
        if db.engine.dialect.name == "postgresql":
            tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
            db.session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            db.session.commit()
        db.session.remove()
        db.engine.dispose()


def engine_for(url: str) -> Engine:
    if url.startswith("sqlite"):
        return create_engine(url, connect_args={"timeout": 30})
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def address(i: int) -> str:
    return f"lead{i:05d}@example.com"


def seed(
    engine: Engine,
    n: int,
    *,
    kind: str = "welcome",
    status: str = "confirmed",
    topics: tuple[str, ...] = ("cspo-classes",),
    send_after: datetime | None = None,
) -> None:
    """n leads lead00000@... with their topics, and one due outbox row each."""
    now = datetime.now(UTC)
    due = send_after or now - timedelta(seconds=1)
    leads = [
        {
            "id": i + 1,
            "public_id": secrets.token_urlsafe(12),
            "email": address(i),
            "status": status,
            "created_at": now,
            "confirmed_at": now if status == "confirmed" else None,
        }
        for i in range(n)
    ]
    lead_topics = [{"lead_id": i + 1, "topic": t} for i in range(n) for t in topics]
    rows = [
        {
            "id": i + 1,
            "kind": kind,
            "lead_id": i + 1,
            "status": "queued",
            "send_after": due,
            "created_at": now,
            "attempts": 0,
        }
        for i in range(n)
    ]
    with engine.begin() as conn:
        for table, values in ((LEAD, leads), (LEAD_TOPIC, lead_topics), (OUTBOX, rows)):
            for start in range(0, len(values), 2000):
                conn.execute(insert(table), values[start : start + 2000])
        if engine.dialect.name == "postgresql":
            for table in ("lead", "outbox_message"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {n})"))


def status_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(
            conn.execute(text("SELECT status, count(*) FROM outbox_message GROUP BY status")).all()
        )


def outbox_row(engine: Engine, row_id: int) -> dict:
    with engine.connect() as conn:
        return dict(
            conn.execute(text("SELECT * FROM outbox_message WHERE id = :id"), {"id": row_id})
            .mappings()
            .one()
        )


# --- Waiting


def wait_for(
    predicate: Callable[[], object],
    timeout: float,
    message: Callable[[], str] | str,
    interval: float = 0.05,
):
    """Poll until predicate() is truthy; fail with message after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            text_ = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:.0f}s: {text_}")
        time.sleep(interval)


def worker_env(tmp_path: Path, url: str, smtp: object, **settings: object) -> dict[str, str]:
    """Environment for `flask worker` sending to the (host, port) of smtp."""
    defaults = {
        **smtp_settings(smtp),
        "SITE_URL": "http://127.0.0.1:5000",
        "WORKER_POLL_SECONDS": "0.1",
        "MAIL_TIMEOUT": "1",
        # The lease must outlast a webhook post too (2 x WEBHOOK_TIMEOUT + 1):
        # these tests use leases of a few seconds.
        "WEBHOOK_TIMEOUT": "1",
    }
    return procs.app_env(tmp_path, url, **{**defaults, **settings})
