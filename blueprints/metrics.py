"""GET /metrics: Prometheus, for METRICS_ALLOWED_IPS or the METRICS_TOKEN bearer."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, request

from services.metrics import exposition

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    cfg = current_app.config
    if not exposition.allowed(
        request.remote_addr,
        request.headers.get("Authorization"),
        cfg["METRICS_ALLOWED_IPS"],
        cfg["METRICS_TOKEN"],
    ):
        abort(403)
    response = current_app.response_class(exposition.scrape(), content_type=exposition.CONTENT_TYPE)
    response.cache_control.no_store = True
    return response
