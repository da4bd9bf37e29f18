"""Turn an outbox row into a MIME message: templates, links and headers."""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from flask import current_app, render_template
from markupsafe import Markup

from extensions import db
from models import Announcement, Lead, MailKind, OutboxMessage, TrainingClass
from models.outbox import CONFIRMATION_KINDS
from services import clock, subscriptions, templating, topics, training
from services.links import external_url

MAIL_POLICY = policy.SMTP.clone(max_line_length=998)

SUBJECTS = {
    MailKind.CONFIRMATION: "Please confirm your subscription",
    MailKind.ALREADY_SUBSCRIBED: "You are already subscribed",
    MailKind.WELCOME: "Welcome! Here is what comes next",
    MailKind.CONFIRM_REMINDER: "One click left: confirm your subscription",
    MailKind.CLASSES_FOLLOWUP: "The next CSPO classes",
    MailKind.CLASS_REMINDER: "Your CSPO class is coming up: {title}",
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


def class_context(cls: TrainingClass, lead: Lead | None, via: str = "mail") -> dict:
    """A class as merge tags and template values see it."""
    start, end = training.local_times(cls)
    same_day = start.date() == end.date()
    price = f"{cls.currency} {cls.price:,.2f}" if cls.price is not None else ""
    return {
        "title": cls.title,
        "start": start.strftime("%A %-d %B %Y, %H:%M"),
        "end": end.strftime("%H:%M" if same_day else "%A %-d %B %Y, %H:%M"),
        "timezone": cls.timezone,
        "when": training.when_text(cls),
        "where": training.where(cls),
        "trainer": cls.trainer or "",
        "price": price,
        "seats_left": cls.seats_left if cls.seats_left is not None else "",
        "register_url": external_url(
            "articles.register", token=training.register_token(cls, lead, via)
        )
        if cls.registration_url
        else "",
        "calendar_url": external_url("articles.class_ics", public_id=cls.public_id),
    }


def _lead_links(lead: Lead | None) -> dict:
    if lead is None:  # a test send to an admin: links that show what they are
        placeholder = external_url("articles.index") + "#link-in-real-mail"
        return {"preferences_url": placeholder, "unsubscribe_url": placeholder}
    return {
        "preferences_url": external_url(
            "subscriptions.preferences", token=subscriptions.preferences_token(lead)
        ),
        "unsubscribe_url": external_url(
            "subscriptions.unsubscribe", token=subscriptions.unsubscribe_token(lead)
        ),
    }


def _context(row: OutboxMessage, lead: Lead | None) -> dict:
    cfg = current_app.config
    ctx = {
        "site_name": cfg["SITE_NAME"],
        "site_url": cfg["SITE_URL"],
        "postal_address": cfg["COMPANY_POSTAL_ADDRESS"],
        "lead": lead,
        "first_name": (lead.name or "").split(" ")[0] if lead and lead.name else None,
        "topic_labels": [topics.label(t) for t in topics.clean(list(lead.topic_slugs))]
        if lead
        else [],
        "training_url": external_url("articles.training"),
        **_lead_links(lead),
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


def _announcement_parts(
    row: OutboxMessage, lead: Lead | None, ctx: dict, preview: bool = False
) -> str:
    ann = db.session.get(Announcement, row.announcement_id)
    cls = ann.training_class
    ctx["class"] = class_context(cls, lead, "announcement") if cls else None
    merge = {
        # Previews and test sends have no lead: they show a sample name.
        "first_name": ctx["first_name"] or ("" if lead else "Alex"),
        "email": lead.email if lead else row.to_email,
        "unsubscribe_url": ctx["unsubscribe_url"],
        "preferences_url": ctx["preferences_url"],
        "class": ctx["class"],
    }
    rendered = templating.render(ann.subject, ann.body, merge)
    if lead is None and not preview:
        rendered.subject = f"[Test] {rendered.subject}"
    ctx["body_text"] = rendered.text
    ctx["body_html"] = Markup(rendered.html)  # noqa: S704 (markdown-it with html off)
    ctx["topic_label"] = topics.label(ann.topic)
    return rendered.subject


def render_parts(
    row: OutboxMessage, lead: Lead | None, *, preview: bool = False
) -> tuple[str, str, str]:
    """(subject, text, html) for a row: what the worker sends and the admin
    previews (preview=True: no [Test] mark on the subject)."""
    subject, text, html, _ = _render(row, lead, preview)
    return subject, text, html


def _render(row: OutboxMessage, lead: Lead | None, preview: bool) -> tuple[str, str, str, dict]:
    kind = MailKind(row.kind)
    ctx = _context(row, lead)
    if kind == MailKind.ANNOUNCEMENT:
        subject = _announcement_parts(row, lead, ctx, preview)
    elif kind == MailKind.CLASS_REMINDER:
        cls = db.session.get(TrainingClass, row.training_class_id)
        ctx["class"] = class_context(cls, lead, "class_reminder")
        subject = SUBJECTS[kind].format(title=cls.title)
    else:
        subject = SUBJECTS[kind]
    ctx["subject"] = subject
    text = render_template(f"email/{kind.value}.txt", **ctx)
    html = render_template(f"email/{kind.value}.html", **ctx)
    return subject, text, html, ctx


def compose(row: OutboxMessage, lead: Lead | None) -> Composed:
    cfg = current_app.config
    kind = MailKind(row.kind)
    subject, text, html, ctx = _render(row, lead, preview=False)
    # Headers up to RFC 5322's 998 characters stay on one line: folded at 78,
    # a long List-Unsubscribe URL went out as RFC 2047 encoded words that
    # mail providers do not decode there, and one-click never showed.
    msg = EmailMessage(policy=MAIL_POLICY)
    msg["Subject"] = (" ".join(subject.split()) or SUBJECTS.get(kind, cfg["SITE_NAME"]))[:200]
    msg["From"] = cfg["MAIL_DEFAULT_SENDER"]
    # Only the validated address reaches a header: a visitor's name never does.
    msg["To"] = Address(addr_spec=lead.email if lead else row.to_email)
    msg["Date"] = format_datetime(clock.now())
    msg["Message-ID"] = message_id(row)
    msg["X-Mail-Kind"] = kind.value
    if not kind.transactional:
        # The link the body shows: signed once per mail, not twice.
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
    return Composed(message=msg, subject=msg["Subject"])
