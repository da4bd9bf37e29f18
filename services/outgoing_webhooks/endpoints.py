"""Registering and managing webhook endpoints (the admin's page). The caller
audits and commits."""

from __future__ import annotations

import hashlib

from flask import current_app
from sqlalchemy import delete, select, update

from extensions import db
from models import User, WebhookDelivery, WebhookEndpoint, WebhookSubscription
from services import paging
from services.outgoing_webhooks import events, signing, targets


class EndpointError(ValueError):
    """Input the admin should correct: every problem found, each saying how."""

    def __init__(self, *problems: str) -> None:
        super().__init__(" ".join(problems))
        self.problems = list(problems)


def endpoints() -> list[WebhookEndpoint]:
    return list(db.session.execute(select(WebhookEndpoint).order_by(WebhookEndpoint.id)).scalars())


def by_public_id(public_id: str) -> WebhookEndpoint | None:
    return db.session.execute(
        select(WebhookEndpoint).where(WebhookEndpoint.public_id == public_id)
    ).scalar_one_or_none()


def _checked(url: str, event_types: list[str]) -> tuple[str, list[str]]:
    """Every problem at once, so the admin fixes them in one go."""
    problems = []
    try:
        targets.check(url, current_app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"])
    except targets.TargetError as exc:
        problems.append(str(exc))
    chosen = sorted(set(event_types) & set(events.EVENT_TYPES))
    if not chosen:
        problems.append("Choose at least one event.")
    if problems:
        raise EndpointError(*problems)
    return url.strip(), chosen


def create(
    url: str, description: str, event_types: list[str], by: User
) -> tuple[WebhookEndpoint, str]:
    """The new endpoint and its secret: shown once, stored only encrypted."""
    url, chosen = _checked(url, event_types)
    secret = signing.new_secret()
    endpoint = WebhookEndpoint(
        url=url,
        description=description.strip(),
        secret_encrypted=signing.encrypt(secret),
        enabled=True,
        created_by_id=by.id,
        subscriptions=[WebhookSubscription(event_type=t) for t in chosen],
    )
    db.session.add(endpoint)
    db.session.flush()
    return endpoint, secret


def set_enabled(endpoint: WebhookEndpoint, enabled: bool) -> bool:
    """False when it was so already. Enabling starts the failure count anew."""
    if endpoint.enabled == enabled:
        return False
    endpoint.enabled = enabled
    endpoint.disabled_reason = None if enabled else "disabled by an admin"
    endpoint.failing_since = None
    return True


def secret_version(endpoint: WebhookEndpoint) -> str:
    """Names the endpoint's current secret without showing it: the rotate
    form carries it, so a form sent twice (a reload) rotates once."""
    return hashlib.sha256(endpoint.secret_encrypted.encode()).hexdigest()[:16]


def rotate(endpoint: WebhookEndpoint, version: str) -> str | None:
    """A new secret, effective for every delivery from now on, retries too;
    None, and nothing changed, when the secret is no longer the one
    `version` names (rotated since: this form sent again, another admin)."""
    if version != secret_version(endpoint):
        return None
    secret = signing.new_secret()
    rotated = db.session.execute(
        update(WebhookEndpoint)
        .where(
            WebhookEndpoint.id == endpoint.id,
            WebhookEndpoint.secret_encrypted == endpoint.secret_encrypted,
        )
        .values(secret_encrypted=signing.encrypt(secret))
    ).rowcount
    return secret if rotated == 1 else None


def remove(endpoint: WebhookEndpoint) -> None:
    db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    db.session.delete(endpoint)


def send_test(endpoint: WebhookEndpoint) -> None:
    events.queue_test(endpoint)


def delivery_log(
    endpoint: WebhookEndpoint, before: int | None, per_page: int
) -> paging.Page[WebhookDelivery]:
    """The endpoint's deliveries newest first: the latest attempt of each."""
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
    return paging.newest_first(stmt, WebhookDelivery.id, before, per_page)
