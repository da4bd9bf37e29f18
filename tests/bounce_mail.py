"""What comes back after a mail left, made by the standard library as an MTA
would write it: Postfix-style DSNs (RFC 3464), the ARF complaint of RFC 5965
(tests/fixtures), an out-of-office reply; and `flask bounces serve` as a
real process, with a client that talks SMTP to it.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import time
from collections.abc import Iterator, Mapping
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid
from pathlib import Path

from services import clock
from tests import procs

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BOUNCE_ADDRESS = "bounces@bounce.example.com"


def _block(fields: dict[str, str]) -> Message:
    block = Message()
    for name, value in fields.items():
        block[name] = value
    return block


def postfix_dsn(
    *,
    to: str,
    recipient: str,
    status: str = "5.1.1",
    action: str = "failed",
    diagnostic: str | None = None,
    original: Message | None = None,
    headers_only: bool = True,
    message_id: str | None = None,
) -> bytes:
    """A DSN as Postfix writes it: multipart/report; report-type=delivery-status,
    a human part, message/delivery-status, and the mail returned (its
    headers, text/rfc822-headers, or the whole of it, message/rfc822).
    `to` is the envelope sender of the mail that failed (where it goes)."""
    if diagnostic is None:
        diagnostic = (
            f"smtp; 550 {status} <{recipient}>: Recipient address rejected: "
            "User unknown in virtual mailbox table"
            if status.startswith("5")
            else f"smtp; 452 {status} <{recipient}>: Mailbox full"
        )
    report = MIMEMultipart("report", **{"report-type": "delivery-status"})
    report["From"] = "MAILER-DAEMON@mx.example.net (Mail Delivery System)"
    report["To"] = to
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = format_datetime(clock.now())
    report["Message-Id"] = message_id or make_msgid(domain="mx.example.net")
    # Postfix marks its own DSNs like this (RFC 3834): still a bounce.
    report["Auto-Submitted"] = "auto-replied"
    human = MIMEText(
        "This is the mail system at host mx.example.net.\n\n"
        "I'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients.\n\n"
        f"<{recipient}>: host mx.example.com said: {diagnostic}\n"
    )
    human["Content-Description"] = "Notification"
    report.attach(human)
    status_part = MIMEBase("message", "delivery-status")
    status_part["Content-Description"] = "Delivery report"
    status_part.set_payload(
        [
            _block(
                {
                    "Reporting-MTA": "dns; mx.example.net",
                    "X-Postfix-Queue-ID": "4BXq2J1s1zz9sWq",
                    "X-Postfix-Sender": f"rfc822; {to}",
                    "Arrival-Date": format_datetime(clock.now()),
                }
            ),
            _block(
                {
                    "Final-Recipient": f"rfc822; {recipient}",
                    "Original-Recipient": f"rfc822;{recipient}",
                    "Action": action,
                    "Status": status,
                    "Remote-MTA": "dns; mx.example.com",
                    "Diagnostic-Code": diagnostic,
                }
            ),
        ]
    )
    report.attach(status_part)
    if original is None:
        original = _block({"Subject": "a mail", "To": recipient})
    if headers_only:
        returned = MIMEText(_headers_text(original), "rfc822-headers")
        del returned["Content-Transfer-Encoding"]
        returned.set_type("text/rfc822-headers")
    else:
        returned = MIMEMessage(original)
    returned["Content-Description"] = "Undelivered Message Headers"
    report.attach(returned)
    return _wire(report)


def _wire(msg: Message) -> bytes:
    """As it goes over SMTP: CRLF line ends (smtplib sends bytes as they are)."""
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def _headers_text(msg: Message) -> str:
    return "".join(f"{name}: {value}\n" for name, value in msg.items())


def arf_complaint(
    *,
    mail_from: str | None = None,
    rcpt_to: str | None = None,
    message_id: str | None = None,
) -> bytes:
    """RFC 5965's example report (Appendix B), made to be about one of our
    mails: its envelope sender, its recipient and its Message-ID."""
    raw = (FIXTURES / "arf-rfc5965.eml").read_bytes()
    if mail_from:
        raw = raw.replace(
            b"Original-Mail-From: <somespammer@example.net>",
            f"Original-Mail-From: <{mail_from}>".encode(),
        )
    if rcpt_to:
        raw = raw.replace(b"<user@example.com>", f"<{rcpt_to}>".encode())
    if message_id:
        raw = raw.replace(b"8787KJKJ3K4J3K4J3K4J3.mail@example.net", message_id.encode())
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def out_of_office(*, to: str, subject: str = "Out of Office: The next CSPO classes") -> bytes:
    reply = MIMEText("I am away until Monday and will read your mail then.\n")
    reply["From"] = "Lead <lead@example.com>"
    reply["To"] = to
    reply["Subject"] = subject
    reply["Auto-Submitted"] = "auto-replied"
    reply["Message-Id"] = make_msgid(domain="example.com")
    return _wire(reply)


def envelope_sender_of(smtp, recipient: str) -> str:
    """The MAIL FROM the SMTP server saw for the mail to `recipient`."""
    for mail_from, rcpts, _msg in smtp.messages:
        if recipient in rcpts:
            return mail_from
    raise AssertionError(f"no mail to {recipient} in {len(smtp.messages)} received")


# --- `flask bounces serve` as a process.

READY = re.compile(r"bounces: receiving mail for \S+ .* on [\d.]+:(\d+)")


@contextlib.contextmanager
def bounce_receiver(env: Mapping[str, str], log_path: Path, *args: str) -> Iterator[procs.Proc]:
    """`flask bounces serve [ARGS]` on a free port of 127.0.0.1, ready on
    entry (proc.port), stopped with SIGTERM when the block ends."""
    port = procs.free_port()
    argv = ["-m", "flask", "--app", "app", "bounces", "serve", "--port", str(port), *args]
    proc = procs.Proc([procs.PYTHON, *argv], env, log_path)
    proc.port = port
    try:
        proc.start()
        deadline = time.monotonic() + 60
        while not READY.search(proc.log()):
            if not proc.alive():
                raise procs.ProcessFailed(f"bounces serve exited:\n{proc.log()}")
            if time.monotonic() > deadline:
                raise procs.ProcessFailed(f"bounces serve not ready:\n{proc.log()}")
            time.sleep(0.05)
        yield proc
    finally:
        proc.stop()


def deliver(port: int, rcpt: str, raw: bytes, mail_from: str = "") -> tuple[int, bytes]:
    """One message over SMTP to 127.0.0.1:port, as an MTA delivers a bounce
    (null sender by default); the server's reply to DATA, or to RCPT when
    it refused the recipient."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("mx.example.net")
        client.mail(mail_from)
        code, text = client.rcpt(rcpt)
        if code >= 400:
            return code, text
        return client.data(raw)
