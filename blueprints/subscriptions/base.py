"""The subscriptions blueprint and what its views share: the consent evidence
of a request."""

from __future__ import annotations

import ipaddress

from flask import Blueprint, request

from services.leads import subscriptions

bp = Blueprint("subscriptions", __name__)


def _client_ip() -> str | None:
    # With TRUSTED_PROXY_COUNT set, the address comes from X-Forwarded-For:
    # text a client may have written. Only a real address is kept as evidence.
    try:
        return str(ipaddress.ip_address((request.remote_addr or "").split("%")[0]))
    except ValueError:
        return None


def evidence() -> subscriptions.Evidence:
    # Servers other than gunicorn let NUL and other control characters through
    # in headers; PostgreSQL refuses NUL in text (a 500, and a lost signup).
    agent = request.headers.get("User-Agent", "")
    if not agent.isprintable():  # nearly always is: no need to look at each character
        agent = "".join(ch for ch in agent if ch.isprintable())
    return subscriptions.Evidence(ip=_client_ip(), user_agent=agent[:500] or None)
