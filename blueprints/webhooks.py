"""POST /webhooks/<provider>: bounce and complaint events from an ESP.

No session and no CSRF token: the provider's signature or credentials are
the capability (services.bounces.webhooks checks them). JSON only (SNS
sends it as text/plain)."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request

from extensions import csrf, db, limiter
from services.bounces import webhooks

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
log = logging.getLogger("leads.bounces")


@bp.post("/<provider>")
@csrf.exempt  # an ESP posts with no cookie: its signature is checked instead
@limiter.limit(lambda: current_app.config["WEBHOOK_RATE_LIMIT"])
def receive(provider: str):
    # SNS posts its JSON as text/plain.
    if request.mimetype not in ("application/json", "text/plain"):
        return _answer(415, "send application/json")
    try:
        stored = webhooks.receive(provider, request.get_data(cache=False), request.authorization)
        db.session.commit()
    except webhooks.Refused as exc:
        db.session.rollback()
        if exc.status in (401, 403):
            log.warning("webhook %s refused from %s: %s", provider[:20], request.remote_addr, exc)
        return _answer(exc.status, exc.message)
    if not stored:
        return _answer(200, "ignored: not a bounce or complaint")
    return _answer(200, "; ".join(event.outcome or "stored" for event in stored))


def _answer(status: int, message: str):
    response = jsonify(message=message)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="webhooks"'
    return response
