"""What DKIM signing costs per mail: compose() signed vs unsigned, one run.

    python -m bench.dkim_cost [--number 300]

Composes a welcome and an announcement (the delivery benchmark's two kinds)
with `services.mail.compose.compose`, in an app without the DKIM settings
and in one with a 2048-bit key made by `flask dkim keygen`'s code, five
repeats each, taken in turns; the figure is the best repeat, in microseconds per
mail, and the ratio signed / unsigned. Also shown, from the same key: the
signature alone (`Signer.sign`), and dkimpy's PEM parse, which its public
sign() repeats for every mail. Every signed mail is checked with dkimpy's
verify() against the key's DNS record before timing. Nothing here touches a
database: the rows and the lead are the worker's plain snapshots.
"""

from __future__ import annotations

import argparse
import tempfile
import timeit
from datetime import UTC, datetime
from pathlib import Path

import dkim
from dkim.crypto import parse_pem_private_key

from app import create_app
from models import Announcement, LeadStatus, MailKind
from services.mail import dkim as signing
from services.mail.compose import QueuedMail, Recipient, Refs, compose

NOW = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
LEAD = Recipient(
    id=1,
    public_id="bench-lead-1",
    email="lead1@example.com",
    name="Ann Example",
    status=LeadStatus.CONFIRMED,
    topic_slugs=frozenset({"cspo-classes", "newsletter"}),
)
ANNOUNCEMENT = Announcement(
    id=1,
    subject="New CSPO dates",
    body="Hello {{ first_name or 'there' }},\n\nThe next **CSPO** classes are open: two days, "
    "online, with a certified trainer.\n\n- live\n- small groups\n\n"
    "[Unsubscribe]({{ unsubscribe_url }})\n",
    topic="cspo-classes",
    training_class_id=None,
)
ROWS = {
    kind: QueuedMail(
        id=i,
        kind=kind,
        lead_id=LEAD.id,
        announcement_id=ANNOUNCEMENT.id if kind == MailKind.ANNOUNCEMENT else None,
        training_class_id=None,
        to_email=None,
        created_at=NOW,
    )
    for i, kind in enumerate((MailKind.WELCOME, MailKind.ANNOUNCEMENT), start=1)
}
DOMAIN, SELECTOR = "scrum-academy.example", "bench"


def _app(scratch: Path, **settings):
    return create_app(
        {
            "SECRET_KEY": "bench",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{scratch / 'unused.sqlite3'}",
            "MAIL_FILE_DIR": str(scratch / "mail"),
            **settings,
        }
    )


def _best(fn, number: int) -> float:
    """Microseconds per call, best of 5 repeats."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def _in_turns(apps: dict, row: QueuedMail, refs: Refs, number: int) -> dict[str, float]:
    """Microseconds per compose() for each app, repeats taken in turns (one
    side, then the other, five times), the best of each."""
    best = dict.fromkeys(apps, float("inf"))
    for _ in range(5):
        for name, app in apps.items():
            with app.app_context():
                took = timeit.timeit(lambda: compose(row, LEAD, refs), number=number)
            best[name] = min(best[name], took / number * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dkim_cost", description=__doc__)
    parser.add_argument("--number", type=int, default=300, help="mails per repeat")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        key_file = scratch / f"{SELECTOR}.pem"
        pem = signing.generate_key(key_file)
        _, record = signing.dns_record(SELECTOR, DOMAIN, signing.public_key_b64(key_file))
        plain = _app(scratch)
        signed = _app(
            scratch,
            DKIM_DOMAIN=DOMAIN,
            DKIM_SELECTOR=SELECTOR,
            DKIM_PRIVATE_KEY_FILE=str(key_file),
        )
        refs = Refs(announcements={ANNOUNCEMENT.id: ANNOUNCEMENT})
        print(f"{'mail':13} {'unsigned µs':>12} {'signed µs':>10} {'ratio':>6}")
        for kind, row in ROWS.items():
            with signed.app_context():
                data = compose(row, LEAD, refs).mail.data
                assert dkim.verify(data, dnsfunc=lambda name, timeout=5: record.encode()), kind
            times = _in_turns({"unsigned": plain, "signed": signed}, row, refs, args.number)
            ratio = times["signed"] / times["unsigned"]
            print(
                f"{kind.value:13} {times['unsigned']:12.0f} {times['signed']:10.0f} {ratio:5.1f}x"
            )
        with plain.app_context():
            unsigned = compose(ROWS[MailKind.ANNOUNCEMENT], LEAD, refs).mail.data
        signer = signed.extensions["dkim"]
        sign_us = _best(lambda: signer.sign(unsigned), args.number)
        parse_us = _best(lambda: parse_pem_private_key(pem), args.number)
        print(f"of which the signature (Signer.sign): {sign_us:.0f} µs")
        print(f"  of which dkimpy's PEM parse, repeated per mail: {parse_us:.0f} µs")


if __name__ == "__main__":
    main()
