"""Outgoing webhooks in the tests: a real HTTP server on loopback that
receives them (http.server in a thread, keeping every request it got,
answering with the statuses it is told to, in turn, 200 when none are left,
and, when told, after a delay), and the admin's form driven as a browser does."""

from __future__ import annotations

import contextlib
import json
import re
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import select
from standardwebhooks import Webhook

from extensions import db
from models import WebhookDelivery, WebhookEndpoint
from services.outgoing_webhooks import events as outgoing
from tests.helpers import csrf_token, page_text

ALL_EVENTS = list(outgoing.EVENT_TYPES)
# The secret on the page that answers a creation or a rotation.
SECRET_FIELD = re.compile(r'id="secret" type="text" readonly value="(whsec_[^"]+)"')


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def payload(self) -> dict:
        return json.loads(self.body)

    def verify(self, secret: str) -> dict:
        """The official Standard Webhooks verifier (checks the timestamp
        against the real time too): the payload, or WebhookVerificationError."""
        return Webhook(secret).verify(self.body, self.headers)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.statuses: list[int] = []  # answered in turn, then 200
        self.delay = 0.0
        self.location: str | None = None  # sent with a 3xx
        self.server_names: list[str | None] = []  # TLS SNI of each handshake
        self.scheme = "http"
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def payloads(self) -> list[dict]:
        with self.lock:
            return [r.payload for r in self.requests]

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                if receiver.delay:
                    threading.Event().wait(receiver.delay)
                self.send_response(status)
                if receiver.location and 300 <= status < 400:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        return Handler


@contextlib.contextmanager
def webhook_receiver(cert_and_key: tuple[str, str] | None = None) -> Iterator[Receiver]:
    """With cert_and_key (PEM files), https, noting the name each client
    asked for (SNI)."""
    receiver = Receiver()
    receiver.server = ThreadingHTTPServer(("127.0.0.1", 0), receiver.handler())
    if cert_and_key:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*cert_and_key)
        context.sni_callback = lambda _sock, name, _ctx: receiver.server_names.append(name)
        receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
        receiver.scheme = "https"
    receiver.server.daemon_threads = True
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


# --- The admin's side.


def register(client, url: str, events=ALL_EVENTS, description: str = "CRM") -> str:
    """Add an endpoint on the admin's form; the secret the page shows once."""
    token = csrf_token(client, "/admin/webhooks")
    r = client.post(
        "/admin/webhooks",
        data={"csrf_token": token, "url": url, "description": description, "events": events},
    )
    assert r.status_code == 200, page_text(r)
    return SECRET_FIELD.search(r.get_data(as_text=True)).group(1)


def the_endpoint(app) -> WebhookEndpoint:
    with app.app_context():
        endpoint = db.session.execute(select(WebhookEndpoint)).scalar_one()
        db.session.expunge(endpoint)
        return endpoint


def deliveries(app) -> list[WebhookDelivery]:
    with app.app_context():
        rows = list(
            db.session.execute(select(WebhookDelivery).order_by(WebhookDelivery.id)).scalars()
        )
        for row in rows:
            db.session.expunge(row)
        return rows
