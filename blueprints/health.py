from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from extensions import db
from services.outbox import queue_depth

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    try:
        db.session.execute(text("SELECT 1"))
        depth = queue_depth()
    except SQLAlchemyError as exc:
        return jsonify(status="error", error=type(exc).__name__), 503
    return jsonify(status="ok", queue_depth=depth)
