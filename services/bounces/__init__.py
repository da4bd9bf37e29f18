"""Bounces and complaints that arrive after a mail left: read, matched to the
mail by its VERP tag (or, for an ESP's event, by Message-ID or address),
acted on, and kept as InboundEvents.

`process(raw, envelope_rcpt)` takes a whole message: from the SMTP receiver
(`flask bounces serve`, receiver.py) or a mailbox read over IMAP
(`flask bounces fetch`, mailbox.py). `record_event` takes an event an ESP's
webhook reported (webhooks.py checks who sent it). parse.py reads a message;
events.py matches, acts and records for both.
"""

from services.bounces.events import process, record_event

__all__ = ["process", "record_event"]
