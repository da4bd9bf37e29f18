"""`flask bounces serve`: an SMTP server (aiosmtpd) for the bounce address.

It takes mail for MAIL_BOUNCE_ADDRESS, tagged or not, and refuses every other
recipient with 550: it relays nothing and is no open relay. Each message is
processed and committed before the 250, so a message is never acknowledged
and then lost; a database error answers 451 and the sending MTA tries again.

Memory stays bounded on a flood: a message over MAX_MESSAGE_BYTES is refused
with 552 (aiosmtpd discards it as it reads), at most MAX_CONNECTIONS sessions
are open at once (the next is answered 421 and retries later), and a message
is stored in the event loop's own thread: while one is being stored no other
session reads, so nothing queues up in memory.
"""

from __future__ import annotations

import logging

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from flask import Flask

from extensions import db
from services.bounces import events
from services.mail import verp

log = logging.getLogger("leads.bounces")

MAX_CONNECTIONS = 20
MAX_RECIPIENTS = 10  # a DSN has one; a few more is a confused sender, many is abuse


class BounceHandler:
    """aiosmtpd handler: RCPT only for the bounce address, DATA stored."""

    def __init__(self, app: Flask):
        self.app = app
        self.stored = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.app.app_context():
            ours = verp.is_bounce_address(address)
        if not ours:
            return "550 5.1.1 No such mailbox: this server takes bounces only"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or b""
        with self.app.app_context():
            try:
                for rcpt in envelope.rcpt_tos:
                    events.process(raw, rcpt, source="smtp")
                db.session.commit()
            except Exception:
                db.session.rollback()
                log.exception("inbound message from %s not stored", session.peer)
                return "451 4.3.0 Not stored: please try again later"
            finally:
                db.session.remove()
        self.stored += 1
        return "250 OK: stored"


class _Gate:
    """Counts open sessions (touched only from the event loop's thread)."""

    def __init__(self, limit: int):
        self.limit, self.open = limit, 0

    def enter(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open -= 1


class _CappedSMTP(SMTP):
    """aiosmtpd's SMTP session, refused with 421 beyond the gate's limit."""

    def __init__(self, handler, gate: _Gate, **kwargs):
        super().__init__(handler, **kwargs)
        self.gate = gate
        self.admitted = False

    def connection_made(self, transport) -> None:
        if not self.gate.enter():
            transport.write(b"421 4.3.2 Too many connections, try again later\r\n")
            transport.close()
            return
        self.admitted = True
        super().connection_made(transport)

    def connection_lost(self, error) -> None:
        if not self.admitted:
            return
        self.admitted = False
        self.gate.leave()
        super().connection_lost(error)


class BounceController(Controller):
    """aiosmtpd's threaded Controller serving BounceHandler with the caps above."""

    def __init__(self, app: Flask, host: str, port: int, max_connections: int = MAX_CONNECTIONS):
        with app.app_context():
            base = verp.bounce_address()
        super().__init__(
            BounceHandler(app),
            hostname=host,
            port=port,
            # The banner's name: getfqdn() could wait on DNS.
            server_hostname=base[1] if base else "localhost",
            data_size_limit=events.MAX_MESSAGE_BYTES,
        )
        self.gate = _Gate(max_connections)

    def factory(self):
        return _CappedSMTP(self.handler, self.gate, **self.SMTP_kwargs)
