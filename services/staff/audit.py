"""The audit log: one row per sensitive act, in the act's own transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, cast, select

from extensions import db
from models import (
    Announcement,
    ApiToken,
    AuditEvent,
    Lead,
    LeadImport,
    OutboxMessage,
    TrainingClass,
    User,
    WebhookEndpoint,
)
from services import clock, paging


def record(user: User | None, action: str, target: str | None = None, **details) -> None:
    db.session.add(
        AuditEvent(
            at=clock.now(),
            user_id=user.id if user else None,
            actor=user.email if user else "system",
            action=action,
            target=target,
            details={k: v for k, v in details.items() if v not in (None, "", [], {})},
        )
    )


def page(before: int | None, per_page: int) -> paging.Page[AuditEvent]:
    """The log newest first, from below the id `before`."""
    return paging.newest_first(db.select(AuditEvent), AuditEvent.id, before, per_page)


@dataclass(frozen=True)
class Subject:
    """What an entry's target is: its kind ("lead", "user", "import"...), a
    label (title, address, file name) and where its page is (an endpoint,
    its arguments, an anchor); endpoint None when there is no page, or the
    object is gone (an erased lead)."""

    kind: str
    label: str
    endpoint: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    anchor: str | None = None
    exists: bool = True


@dataclass(frozen=True)
class _Kind:
    """How entries of a kind find their object: the column their key is
    matched against, the label shown, and the object's page (endpoint, the
    argument and its column, an anchor); `key_in` names the detail that holds
    the key when the target column holds something else (a webhook's URL)."""

    match: Any
    label: Any
    endpoint: str | None
    arg: str | None = None
    page_key: Any = None  # the column the page is found by; `match` when None
    anchor: str | None = None
    key_in: str | None = None
    missing: str = "no longer exists"


# The one mapping from a kind of object to its label and page.
_KINDS: dict[str, _Kind] = {
    "lead": _Kind(Lead.public_id, Lead.email, "marketing.lead_detail", "public_id"),
    "class": _Kind(
        TrainingClass.public_id,
        TrainingClass.title,
        "admin.class_edit",
        "public_id",
    ),
    "announcement": _Kind(
        Announcement.public_id,
        Announcement.subject,
        "admin.announcement_detail",
        "public_id",
    ),
    # An invitation or a reset request may name an address with no account.
    "user": _Kind(
        User.email,
        User.email,
        "admin.users",
        page_key=User.id,
        anchor="user-",
        missing="no account",
    ),
    "mail": _Kind(
        OutboxMessage.id,
        "mail #" + cast(OutboxMessage.id, String),
        "admin.outbox_detail",
        "row_id",
    ),
    "import": _Kind(
        LeadImport.public_id,
        LeadImport.filename,
        "lead_import.show",
        "public_id",
    ),
    # No page shows another person's tokens: the name and prefix identify it.
    "api_token": _Kind(ApiToken.public_id, ApiToken.name + " (" + ApiToken.prefix + "…)", None),
    "webhook": _Kind(
        WebhookEndpoint.public_id,
        WebhookEndpoint.url,
        "admin.webhook",
        "public_id",
        key_in="endpoint",
    ),
}

# The action's prefix names the kind of its target.
_KIND_OF_PREFIX = {
    "lead": "lead",
    "class": "class",
    "announcement": "announcement",
    "user": "user",
    "invitation": "user",
    "password": "user",
    "2fa": "user",
    "session": "user",
    "outbox": "mail",
    "leads": "import",
    "api_token": "api_token",
    "webhook": "webhook",
}


def _kind_and_key(e: AuditEvent) -> tuple[str, Any] | None:
    name = _KIND_OF_PREFIX.get(e.action.partition(".")[0])
    if name is None:
        return None
    kind = _KINDS[name]
    key = (e.details or {}).get(kind.key_in) if kind.key_in else e.target
    if not key:
        return None
    try:  # the key as its column's type: an outbox row's id is a number
        return name, kind.match.type.python_type(key)
    except (TypeError, ValueError):
        return None


def subjects(events: list[AuditEvent]) -> dict[int, Subject]:
    """The subject of each entry that has one, by entry id: one query per
    kind of object on the page, never one per entry."""
    keyed = {e.id: k for e in events if (k := _kind_and_key(e)) is not None}
    wanted: dict[str, set[Any]] = {}
    for name, key in keyed.values():
        wanted.setdefault(name, set()).add(key)
    found: dict[tuple[str, Any], Subject] = {}
    for name, keys in wanted.items():
        kind = _KINDS[name]
        page_key = kind.match if kind.page_key is None else kind.page_key
        for key, label, arg in db.session.execute(
            select(kind.match, kind.label, page_key).where(kind.match.in_(keys))
        ):
            found[name, key] = Subject(
                name,
                label,
                kind.endpoint,
                {kind.arg: arg} if kind.arg else {},
                f"{kind.anchor}{arg}" if kind.anchor else None,
            )
    out: dict[int, Subject] = {}
    for entry_id, (name, key) in keyed.items():
        out[entry_id] = found.get((name, key)) or Subject(name, _KINDS[name].missing, exists=False)
    return out


@dataclass(frozen=True)
class Detail:
    """One detail of an entry as a reader sees it; `full` is the whole value
    when `text` had to be shortened."""

    key: str
    text: str
    full: str | None = None


DETAIL_MAX = 80


def _readable(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_readable(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set):
        return ", ".join(_readable(v) for v in value)
    return str(value)


def details(event: AuditEvent) -> list[Detail]:
    """An entry's details in words, not Python reprs: nested values as
    "key: value" pairs, lists joined, booleans as yes/no, long values cut."""
    out = []
    for key, value in (event.details or {}).items():
        text = _readable(value)
        if len(text) > DETAIL_MAX:
            out.append(Detail(str(key), text[: DETAIL_MAX - 1].rstrip() + "…", text))
        else:
            out.append(Detail(str(key), text))
    return out
