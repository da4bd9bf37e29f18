"""A real HTTP server on loopback that receives outgoing webhooks, for the
tests: http.server in a thread, keeping every request it got, answering with
the statuses it is told to (in turn; 200 when none are left) and, when told,
after a delay."""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook


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
