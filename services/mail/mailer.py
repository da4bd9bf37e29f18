"""Mail transports behind one interface: file (default), smtp, console.

A transport raises DeliveryError; `permanent` tells the worker whether the
server refused for good (5xx: never retried) or for now (4xx, timeouts,
dropped connections: retried with backoff).
"""

from __future__ import annotations

import contextlib
import logging
import os
import smtplib
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger("leads.mail")


@dataclass(frozen=True)
class OutgoingMail:
    """One mail as it goes on the wire: the envelope and the message bytes
    (CRLF line ends), serialised once by whoever built it."""

    sender: str
    recipient: str
    data: bytes
    message_id: str
    kind: str = "mail"


class DeliveryError(Exception):
    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        code: int | None = None,
        recipient_refused: bool = False,
    ):
        super().__init__(message)
        self.permanent = permanent
        self.code = code
        # True when the refusal was about the recipient (a hard bounce).
        self.recipient_refused = recipient_refused


class Transport(Protocol):
    def send(self, mail: OutgoingMail) -> None: ...

    def close(self) -> None: ...


class FileTransport:
    """Writes each mail as an .eml file: the embedded default. The file holds
    the message as it would go on the wire, nothing more; the envelope (the
    VERP sender a bounce would come back to) is logged at DEBUG."""

    def __init__(self, directory: str):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def send(self, mail: OutgoingMail) -> None:
        msg_id = mail.message_id.strip("<>").split("@")[0]
        final = self.directory / f"{msg_id}-{mail.kind}.eml"
        tmp = final.with_suffix(".tmp")
        # Written whole, then renamed: a reader never sees half a mail.
        tmp.write_bytes(mail.data)
        os.replace(tmp, final)
        log.debug("wrote %s: MAIL FROM:<%s> RCPT TO:<%s>", final.name, mail.sender, mail.recipient)

    def close(self) -> None:
        pass


class ConsoleTransport:
    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def send(self, mail: OutgoingMail) -> None:
        text = mail.data.decode("utf-8", "replace").replace("\r\n", "\n")
        # The envelope first, as an SMTP server would see it, then the message.
        envelope = f"MAIL FROM:<{mail.sender}> RCPT TO:<{mail.recipient}>\n\n"
        self.stream.write(envelope + text + "\n" + "-" * 72 + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class SmtpTransport:
    """One connection, reused across messages until it fails or is closed."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        use_tls: bool = False,
        use_ssl: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ):
        self.host, self.port = host, port
        self.use_tls, self.use_ssl = use_tls, use_ssl
        self.username, self.password = username, password
        self.timeout = timeout
        self._conn: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        if self.use_ssl:
            conn = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.use_tls and not self.use_ssl:
                conn.starttls(context=context)
            if self.username:
                conn.login(self.username, self.password or "")
        except BaseException:
            with contextlib.suppress(OSError):
                conn.close()
            raise
        return conn

    def _open(self) -> smtplib.SMTP:
        """The session, opened when needed. Whatever goes wrong before a mail
        is offered (greeting, STARTTLS, login) says nothing about the
        recipient: a 5xx here is our configuration or the server's state, so
        it is retried, never failed for good, and never suppresses anyone."""
        if self._conn is None:
            try:
                self._conn = self._connect()
            except smtplib.SMTPResponseException as exc:
                raise DeliveryError(
                    f"session with {self.host}:{self.port} refused: "
                    f"{exc.smtp_code} {_text(exc.smtp_error)}",
                    permanent=False,
                    code=exc.smtp_code,
                ) from exc
            except (TimeoutError, smtplib.SMTPException, OSError) as exc:
                raise DeliveryError(f"{type(exc).__name__}: {exc}", permanent=False) from exc
        return self._conn

    @staticmethod
    def _submit(conn: smtplib.SMTP, mail: OutgoingMail) -> dict:
        conn.ehlo_or_helo_if_needed()  # what the server offers decides the options
        options = []
        if not mail.recipient.isascii():
            options.append("SMTPUTF8")  # refused by a server without it: permanent
        if not mail.data.isascii() and conn.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        return conn.sendmail(mail.sender, [mail.recipient], mail.data, options)

    def send(self, mail: OutgoingMail) -> None:
        reused = self._conn is not None
        conn = self._open()
        try:
            try:
                refused = self._submit(conn, mail)
            except smtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                # The server closed an idle connection we kept: open a fresh
                # one at once rather than wait a whole backoff.
                self._reset()
                conn = self._open()
                refused = self._submit(conn, mail)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            self._reset()
            raise DeliveryError(
                f"{code} {_text(text)}",
                permanent=code >= 500,
                code=code,
                recipient_refused=code >= 500,
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            self._reset()
            raise DeliveryError(f"server cannot take this mail: {exc}", permanent=True) from exc
        except smtplib.SMTPSenderRefused as exc:
            self._reset()
            raise DeliveryError(
                f"sender refused: {exc.smtp_code} {_text(exc.smtp_error)}",
                permanent=exc.smtp_code >= 500,
                code=exc.smtp_code,
            ) from exc
        except smtplib.SMTPResponseException as exc:
            # A 5xx after DATA is permanent for this mail, but it is about the
            # address only when the enhanced status says so (5.1.x: bad
            # mailbox); "554 5.7.1 spam" must not block a valid reader.
            self._reset()
            detail = _text(exc.smtp_error)
            raise DeliveryError(
                f"{exc.smtp_code} {detail}",
                permanent=exc.smtp_code >= 500,
                code=exc.smtp_code,
                recipient_refused=exc.smtp_code >= 500 and detail.startswith("5.1."),
            ) from exc
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            self._reset()
            raise DeliveryError(f"{type(exc).__name__}: {exc}", permanent=False) from exc
        if refused:  # only when some of several recipients were refused
            code, text = next(iter(refused.values()))
            raise DeliveryError(
                f"{code} {_text(text)}",
                permanent=code >= 500,
                code=code,
                recipient_refused=code >= 500,
            )

    def _reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def transport_from_config(config) -> Transport:
    backend = config["MAIL_BACKEND"]
    if backend == "file":
        return FileTransport(config["MAIL_FILE_DIR"])
    if backend == "console":
        return ConsoleTransport()
    if backend == "smtp":
        return SmtpTransport(
            config["MAIL_SERVER"],
            config["MAIL_PORT"],
            use_tls=config["MAIL_USE_TLS"],
            use_ssl=config["MAIL_USE_SSL"],
            username=config["MAIL_USERNAME"],
            password=config["MAIL_PASSWORD"],
            timeout=config["MAIL_TIMEOUT"],
        )
    raise ValueError(f"MAIL_BACKEND must be file, smtp or console, not {backend!r}")
