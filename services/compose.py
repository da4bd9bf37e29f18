"""Turn an outbox row into a MIME message: templates, links and headers."""

from __future__ import annotations

from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from flask import current_app, render_template

from models import Lead, MailKind, OutboxMessage
from models.outbox import CONFIRMATION_KINDS
from services import clock, subscriptions, topics, training
from services.links import external_url

SUBJECTS = {
    MailKind.CONFIRMATION: "Please confirm your subscription",
    MailKind.ALREADY_SUBSCRIBED: "You are already subscribed",
    MailKind.WELCOME: "Welcome! Here is what comes next",
    MailKind.CONFIRM_REMINDER: "One click left: confirm your subscription",
    MailKind.CLASSES_FOLLOWUP: "The next CSPO classes",
}


@dataclass
class Composed:
    message: EmailMessage
    subject: str


def sender_domain() -> str:
    _, addr = parseaddr(current_app.config["MAIL_DEFAULT_SENDER"])
    return addr.rpartition("@")[2] or "localhost"


def message_id(row: OutboxMessage) -> str:
    # Stable per row, so a retried mail is recognisably the same mail.
    stamp = int(row.created_at.timestamp())
    return f"<{row.id}.{stamp}.outbox@{sender_domain()}>"


def _context(row: OutboxMessage, lead: Lead) -> dict:
    cfg = current_app.config
    ctx = {
        "site_name": cfg["SITE_NAME"],
        "site_url": cfg["SITE_URL"],
        "postal_address": cfg["COMPANY_POSTAL_ADDRESS"],
        "lead": lead,
        "first_name": (lead.name or "").split(" ")[0] if lead.name else None,
        "topic_labels": [topics.label(t) for t in topics.clean(list(lead.topic_slugs))],
        "training_url": external_url("articles.training"),
        "preferences_url": external_url(
            "subscriptions.preferences", token=subscriptions.preferences_token(lead)
        ),
        "unsubscribe_url": external_url(
            "subscriptions.unsubscribe", token=subscriptions.unsubscribe_token(lead)
        ),
    }
    if row.kind == MailKind.CLASSES_FOLLOWUP:
        ctx["classes"] = [
            (cls, *training.local_times(cls)) for cls in training.upcoming_classes(limit=5)
        ]
    if row.kind in CONFIRMATION_KINDS:
        ctx["confirm_url"] = external_url(
            "subscriptions.confirm", token=subscriptions.confirm_token(lead)
        )
        ctx["confirm_days"] = max(1, cfg["CONFIRMATION_MAX_AGE_SECONDS"] // 86400)
    return ctx


def compose(row: OutboxMessage, lead: Lead) -> Composed:
    cfg = current_app.config
    kind = MailKind(row.kind)
    ctx = _context(row, lead)
    subject = SUBJECTS[kind]
    ctx["subject"] = subject
    text = render_template(f"email/{kind.value}.txt", **ctx)
    html = render_template(f"email/{kind.value}.html", **ctx)

    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = cfg["MAIL_DEFAULT_SENDER"]
    # Only the validated address reaches a header: a visitor's name never does.
    msg["To"] = Address(addr_spec=lead.email)
    msg["Date"] = format_datetime(clock.now())
    msg["Message-ID"] = message_id(row)
    msg["X-Mail-Kind"] = kind.value
    if not kind.transactional:
        unsubscribe = [f"<{ctx['unsubscribe_url']}>"]
        if cfg.get("MAIL_UNSUBSCRIBE_MAILTO"):
            unsubscribe.append(f"<mailto:{cfg['MAIL_UNSUBSCRIBE_MAILTO']}?subject=unsubscribe>")
        msg["List-Unsubscribe"] = ", ".join(unsubscribe)
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["List-Id"] = f"{cfg['SITE_NAME']} <updates.{sender_domain()}>"
        msg["Precedence"] = "bulk"
    else:
        msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return Composed(message=msg, subject=subject)
