"""Turn an outbox row into a mail: templates, links and headers."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime, parseaddr

from flask import current_app
from markupsafe import Markup

from extensions import db
from models import (
    Announcement,
    Lead,
    LeadStatus,
    MailKind,
    OutboxMessage,
    StaffToken,
    TokenPurpose,
    TrainingClass,
)
from models.outbox import CONFIRMATION_KINDS, STAFF_KINDS
from services import clock
from services.campaigns import classes
from services.leads import subscriptions, topics
from services.mail import dkim, mime, templating, verp
from services.mail.links import external_url
from services.mail.mailer import OutgoingMail
from services.staff import links

SUBJECTS = {
    MailKind.CONFIRMATION: "Please confirm your subscription",
    MailKind.ALREADY_SUBSCRIBED: "You are already subscribed",
    MailKind.WELCOME: "Welcome! Here is what comes next",
    MailKind.CONFIRM_REMINDER: "One click left: confirm your subscription",
    MailKind.CLASSES_FOLLOWUP: "The next CSPO classes",
    MailKind.CLASS_REMINDER: "Your CSPO class is coming up: {title}",
    MailKind.STAFF_INVITATION: "You are invited to {site_name}",
    MailKind.PASSWORD_RESET: "Choose a new password for {site_name}",
    MailKind.STAFF_NOTICE: "A notice about your {site_name} account",
}
# Where a staff mail's link leads.
STAFF_LINK_ENDPOINTS = {
    TokenPurpose.INVITATION: "staff_links.invitation",
    TokenPurpose.PASSWORD_RESET: "staff_links.reset_password",
}


@dataclass
class Composed:
    mail: OutgoingMail
    subject: str


@dataclass(frozen=True, slots=True)
class QueuedMail:
    """What composing needs of an outbox row: the worker reads these as
    plain rows. An OutboxMessage has the same attributes and does as well."""

    id: int
    kind: MailKind
    lead_id: int | None
    announcement_id: int | None
    training_class_id: int | None
    to_email: str | None
    created_at: datetime
    subject: str | None  # a staff notice's text; else written when sent
    staff_token_id: int | None = None


@dataclass(frozen=True, slots=True)
class Recipient:
    """What composing and the send-time checks need of a lead (a Lead does
    as well)."""

    id: int
    public_id: str
    email: str
    name: str | None
    status: LeadStatus
    topic_slugs: frozenset[str]


# Either the ORM objects (admin previews) or the worker's snapshots.
MailRow = OutboxMessage | QueuedMail
MailLead = Lead | Recipient


@dataclass
class Refs:
    """What a mail refers to besides its row and lead: announcements, classes,
    the upcoming classes. The worker loads them once per batch; left empty,
    each is read from the session when first asked for."""

    announcements: dict[int, Announcement | None] = field(default_factory=dict)
    classes: dict[int, TrainingClass | None] = field(default_factory=dict)
    upcoming: list[TrainingClass] | None = None
    staff_tokens: dict[int, StaffToken | None] = field(default_factory=dict)

    def staff_token(self, token_id: int | None) -> StaffToken | None:
        if token_id is None:
            return None
        if token_id not in self.staff_tokens:
            self.staff_tokens[token_id] = db.session.get(StaffToken, token_id)
        return self.staff_tokens[token_id]

    def announcement(self, ann_id: int) -> Announcement | None:
        if ann_id not in self.announcements:
            self.announcements[ann_id] = db.session.get(Announcement, ann_id)
        return self.announcements[ann_id]

    def training_class(self, class_id: int | None) -> TrainingClass | None:
        if class_id is None:
            return None
        if class_id not in self.classes:
            self.classes[class_id] = db.session.get(TrainingClass, class_id)
        return self.classes[class_id]

    def upcoming_classes(self) -> list[TrainingClass]:
        if self.upcoming is None:
            self.upcoming = classes.upcoming_classes(limit=5)
        return self.upcoming


@functools.cache
def _sender(configured: str) -> tuple[str, str]:
    """(envelope address, From header) for MAIL_DEFAULT_SENDER."""
    name, addr = parseaddr(configured)
    return addr, mime.address_header("From", name, mime.addr_spec(addr))


def sender_domain() -> str:
    addr, _ = _sender(current_app.config["MAIL_DEFAULT_SENDER"])
    return addr.rpartition("@")[2] or "localhost"


def message_id(row: MailRow) -> str:
    # Stable per row, so a retried mail is recognisably the same mail.
    stamp = int(row.created_at.timestamp())
    return f"<{row.id}.{stamp}.outbox@{sender_domain()}>"


def class_context(cls: TrainingClass, lead: MailLead | None, via: str = "mail") -> dict:
    """A class as merge tags and template values see it."""
    start, end = classes.local_times(cls)
    same_day = start.date() == end.date()
    price = f"{cls.currency} {cls.price:,.2f}" if cls.price is not None else ""
    return {
        "title": cls.title,
        "start": start.strftime("%A %-d %B %Y, %H:%M"),
        "end": end.strftime("%H:%M" if same_day else "%A %-d %B %Y, %H:%M"),
        "timezone": cls.timezone,
        "when": classes.when_text(cls),
        "where": classes.where(cls),
        "trainer": cls.trainer or "",
        "price": price,
        "seats_left": cls.seats_left if cls.seats_left is not None else "",
        "register_url": external_url(
            "articles.register", token=classes.register_token(cls, lead, via)
        )
        if cls.registration_url
        else "",
        "calendar_url": external_url("articles.class_ics", public_id=cls.public_id),
    }


def _lead_links(lead: MailLead | None) -> dict:
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


def _context(row: MailRow, lead: MailLead | None, refs: Refs) -> dict:
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
        ctx["classes"] = [(cls, *classes.local_times(cls)) for cls in refs.upcoming_classes()]
    if row.kind in CONFIRMATION_KINDS:
        ctx["confirm_url"] = external_url(
            "subscriptions.confirm", token=subscriptions.confirm_token(lead)
        )
        ctx["confirm_days"] = max(1, cfg["CONFIRMATION_MAX_AGE_SECONDS"] // 86400)
    return ctx


def _staff_context(row: MailRow, refs: Refs, reveal_link: bool) -> dict:
    """The link a staff mail carries. Admins looking at the outbox see a
    placeholder: a reset link there would open another person's account."""
    token = refs.staff_token(row.staff_token_id)
    if token is None:
        return {"link_url": None, "role": None, "expires_at": None}
    if reveal_link:
        url = external_url(STAFF_LINK_ENDPOINTS[token.purpose], token=links.token_for(token))
    else:
        url = external_url("auth.login") + "#link-only-in-the-mail-sent"
    return {
        "link_url": url,
        "role": token.role.value if token.role else None,
        "expires_at": token.expires_at,
        "hours": max(1, round((token.expires_at - token.created_at).total_seconds() / 3600)),
    }


def _announcement_parts(
    row: MailRow, lead: MailLead | None, ctx: dict, refs: Refs, preview: bool = False
) -> str:
    ann = refs.announcement(row.announcement_id)
    cls = refs.training_class(ann.training_class_id)
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
    ctx["body_html"] = Markup(rendered.html)  # noqa: S704 (markdown-it, html off; values autoescaped)
    ctx["topic_label"] = topics.label(ann.topic)
    return rendered.subject


def render_parts(
    row: MailRow, lead: MailLead | None, *, preview: bool = False
) -> tuple[str, str, str]:
    """(subject, text, html) for a row: what the worker sends and the admin
    previews (preview=True: no [Test] mark on the subject)."""
    subject, text, html, _ = _render(row, lead, Refs(), preview, reveal_link=False)
    return subject, text, html


def preview_announcement(ann: Announcement, to_email: str) -> tuple[str, str, str] | str:
    """(subject, text, html) for a made-up lead, or the merge tag error to show."""
    row = OutboxMessage(
        id=0,
        kind=MailKind.ANNOUNCEMENT,
        announcement_id=ann.id,
        to_email=to_email,
        created_at=clock.now(),
    )
    try:
        return render_parts(row, None, preview=True)
    except templating.MergeTagError as exc:
        return str(exc)


def render_stored(row: OutboxMessage) -> tuple[str, str, str] | str:
    """(subject, text, html) of a row in the outbox, or why it cannot be
    rendered: the admin sees what the worker would hit."""
    lead = row.lead
    if lead is None and not row.to_email:
        return "The lead of this mail was erased."
    try:
        return render_parts(row, lead)
    except Exception as exc:
        return f"This mail cannot be rendered: {exc}"


def _render(
    row: MailRow, lead: MailLead | None, refs: Refs, preview: bool, reveal_link: bool = True
) -> tuple[str, str, str, dict]:
    kind = MailKind(row.kind)
    ctx = _context(row, lead, refs)
    if kind == MailKind.ANNOUNCEMENT:
        subject = _announcement_parts(row, lead, ctx, refs, preview)
    elif kind == MailKind.CLASS_REMINDER:
        cls = refs.training_class(row.training_class_id)
        ctx["class"] = class_context(cls, lead, "class_reminder")
        subject = SUBJECTS[kind].format(title=cls.title)
    elif kind == MailKind.STAFF_NOTICE:
        subject = row.subject or current_app.config["SITE_NAME"]
        ctx["admin_url"] = external_url("admin.index")
    elif kind in STAFF_KINDS:
        ctx.update(_staff_context(row, refs, reveal_link))
        subject = SUBJECTS[kind].format(site_name=ctx["site_name"])
    else:
        subject = SUBJECTS[kind]
    ctx["subject"] = subject
    # Straight from the environment: mail needs no request context processors.
    env = current_app.jinja_env
    text = env.get_template(f"email/{kind.value}.txt").render(ctx)
    html = env.get_template(f"email/{kind.value}.html").render(ctx)
    return subject, text, html, ctx


def compose(row: MailRow, lead: MailLead | None, refs: Refs | None = None) -> Composed:
    cfg = current_app.config
    kind = MailKind(row.kind)
    subject, text, html, ctx = _render(row, lead, refs or Refs(), preview=False)
    subject = mime.one_line(subject)[:200] or SUBJECTS.get(kind, cfg["SITE_NAME"])
    envelope_from, from_header = _sender(cfg["MAIL_DEFAULT_SENDER"])
    # Only the validated address reaches a header: a visitor's name never does.
    recipient = mime.addr_spec(lead.email if lead else row.to_email)
    msg_id = message_id(row)
    # Headers up to RFC 5322's 998 characters stay on one line (mime.POLICY):
    # folded at 78, a long List-Unsubscribe URL went out as RFC 2047 encoded
    # words that mail providers do not decode there, and one-click never showed.
    headers = [
        ("Subject", mime.header("Subject", subject)),
        ("From", from_header),
        ("To", mime.mailbox(recipient)),
        ("Date", format_datetime(clock.now())),
        ("Message-ID", mime.header("Message-ID", msg_id)),
        ("X-Mail-Kind", kind.value),
    ]
    if not kind.transactional:
        # The link the body shows: signed once per mail, not twice.
        unsubscribe = [f"<{ctx['unsubscribe_url']}>"]
        if cfg.get("MAIL_UNSUBSCRIBE_MAILTO"):
            unsubscribe.append(f"<mailto:{cfg['MAIL_UNSUBSCRIBE_MAILTO']}?subject=unsubscribe>")
        headers += [
            ("List-Unsubscribe", mime.header("List-Unsubscribe", ", ".join(unsubscribe))),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            (
                "List-Id",
                mime.address_header("List-Id", cfg["SITE_NAME"], f"updates.{sender_domain()}"),
            ),
            ("Precedence", "bulk"),
        ]
    else:
        headers.append(("Auto-Submitted", "auto-generated"))
    mail = OutgoingMail(
        # The bounce address signed for this row (VERP) when one is set.
        sender=verp.envelope_sender(row.id) or envelope_from,
        recipient=recipient,
        # Signed once, here, where the final bytes are made: every transport
        # sends or writes the same signed mail.
        data=dkim.sign(mime.build(headers, text, html)),
        message_id=msg_id,
        kind=kind.value,
    )
    return Composed(mail=mail, subject=subject)
