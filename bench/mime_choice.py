"""Which stdlib route builds our mails: time per mail, both in one run.

    python -m bench.mime_choice [--number 2000]

- compat32: `services.mail.mime.build`, the email.mime classes under compat32
  (as Django and Flask-Mail use them), header values checked and encoded by
  services.mail.mime first, as compose() does;
- EmailMessage: `email.message.EmailMessage` with
  `policy.SMTP.clone(max_line_length=998)`, headers set as plain strings
  (its header registry parses each), `set_content` + `add_alternative`.

Both build the same two mails, one ASCII (the delivery benchmark's
announcement) and one German (non-ASCII sender and subject, a paragraph
over 998 octets), and each result is read back with the stdlib parser to
check that the two routes say the same. Prints microseconds per mail
(best of 5 repeats) and the ratio.
"""

from __future__ import annotations

import argparse
import email
import timeit
from email import policy
from email.message import EmailMessage
from email.utils import formataddr

from services.mail import mime

URL = "https://leads.example.com/unsubscribe/eyJsIjoiYmVuY2gxIn0.aK3xQw.Zm9vYmFyYmF6cXV4cXV1eA"
FOOTER = (
    '<p style="color:#5b6573;font-size:12px">You receive this because you asked for'
    f' CSPO classes on https://leads.example.com. <a href="{URL}">Unsubscribe</a></p>'
)
CASES = {
    "ascii": {
        "site": "Scrum Academy",
        "subject": "New CSPO classes for you",
        "text": "Hello Ann,\n\nThe next CSPO classes are open. [See the dates]"
        f"({URL}).\n\n- two days\n- online\n\n--\nUnsubscribe: {URL}\n"
        "Scrum Academy, 1 Example Street, 10115 Berlin\n",
        "html": '<!doctype html>\n<html><body style="font-family:sans-serif">\n'
        "<p>Hello Ann,</p>\n<p>The <strong>next CSPO classes</strong> are open."
        f' <a href="{URL}">See the dates</a>.</p>\n<ul>\n<li>two days</li>\n'
        f"<li>online</li>\n</ul>\n{FOOTER}\n</body></html>\n",
    },
    "german": {
        "site": "Scrum Akademie München",
        "subject": "Neue CSPO-Kurse in München – „jetzt buchen“ 🎉",
        "text": "Hallo Jörg,\n\n" + "Grüße aus München, die nächsten Kurse stehen fest. " * 25,
        "html": "<p>Hallo Jörg,</p>\n<p>"
        + "Grüße aus München, die nächsten Kurse stehen fest. " * 25
        + f"</p>\n{FOOTER}\n",
    },
}
DATE = "Tue, 01 Sep 2026 09:00:00 +0000"
MSG_ID = "<2.1788253200.outbox@scrum-academy.example>"
EMAIL_MESSAGE_POLICY = policy.SMTP.clone(max_line_length=998)


def with_compat32(case: dict) -> bytes:
    headers = [
        ("Subject", mime.header("Subject", case["subject"])),
        ("From", mime.address_header("From", case["site"], "hello@scrum-academy.example")),
        ("To", mime.mailbox("lead1@example.com")),
        ("Date", DATE),
        ("Message-ID", mime.header("Message-ID", MSG_ID)),
        ("X-Mail-Kind", "announcement"),
        ("List-Unsubscribe", mime.header("List-Unsubscribe", f"<{URL}>")),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("List-Id", mime.address_header("List-Id", case["site"], "updates.scrum-academy.example")),
        ("Precedence", "bulk"),
    ]
    return mime.build(headers, case["text"], case["html"])


def with_email_message(case: dict) -> bytes:
    msg = EmailMessage(policy=EMAIL_MESSAGE_POLICY)
    msg["Subject"] = case["subject"]
    msg["From"] = formataddr((case["site"], "hello@scrum-academy.example"))
    msg["To"] = "lead1@example.com"
    msg["Date"] = DATE
    msg["Message-ID"] = MSG_ID
    msg["X-Mail-Kind"] = "announcement"
    msg["List-Unsubscribe"] = f"<{URL}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["List-Id"] = f"{case['site']} <updates.scrum-academy.example>"
    msg["Precedence"] = "bulk"
    msg.set_content(case["text"])
    msg.add_alternative(case["html"], subtype="html")
    return msg.as_bytes()


def _read(data: bytes) -> tuple:
    msg = email.message_from_bytes(data, policy=policy.default)
    bodies = [msg.get_body((t,)).get_content().replace("\r\n", "\n").rstrip("\n")
              for t in ("plain", "html")]  # fmt: skip
    return (str(msg["Subject"]), msg["From"].addresses[0].display_name, *bodies)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mime_choice", description=__doc__)
    parser.add_argument("--number", type=int, default=2000, help="mails per repeat")
    args = parser.parse_args()
    print(f"{'mail':8} {'compat32 µs':>12} {'EmailMessage µs':>16} {'ratio':>7}")
    for name, case in CASES.items():
        assert _read(with_compat32(case)) == _read(with_email_message(case)), name
        times = {}
        for fn in (with_compat32, with_email_message):
            best = min(
                timeit.repeat(lambda fn=fn, case=case: fn(case), number=args.number, repeat=5)
            )
            times[fn] = best / args.number * 1e6
        ratio = times[with_email_message] / times[with_compat32]
        print(
            f"{name:8} {times[with_compat32]:12.0f} {times[with_email_message]:16.0f} {ratio:6.1f}x"
        )


if __name__ == "__main__":
    main()
