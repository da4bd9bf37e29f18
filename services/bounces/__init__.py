"""Bounces and complaints that arrive after a mail left: read, matched to the
mail by its VERP tag, acted on, and kept as InboundEvents.

`process(raw, envelope_rcpt)` is the one entry point for every way in: the
SMTP receiver (`flask bounces serve`, receiver.py), a mailbox read over
IMAP (`flask bounces fetch`, mailbox.py), and ESP webhooks later. parse.py
reads a message; events.py matches, acts and records.
"""

from services.bounces.events import process

__all__ = ["process"]
