from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy.exc import SQLAlchemyError

from services.delivery.outbox import queue_depth

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    # Counting the queue is the database check: it answers, or this raises.
    try:
        depth = queue_depth()
    except SQLAlchemyError as exc:
        return jsonify(status="error", error=type(exc).__name__), 503
    return jsonify(status="ok", queue_depth=depth)
