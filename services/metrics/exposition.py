"""The scrape: who may read it, and what it says.

Counters and histograms come from every gunicorn worker's files (multiproc)
or from this process; the outbox gauges are read from the database at scrape
time, so every web process reports the same queue whatever it sent itself.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterable, Sequence

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.exc import SQLAlchemyError

from extensions import db
from services.delivery.outbox_report import queue_state
from services.metrics import multiproc

log = logging.getLogger("leads.metrics")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def allowed(
    remote_addr: str | None,
    authorization: str | None,
    networks: Sequence[Network],
    token: str | None,
) -> bool:
    """From an allowed network, or with `Authorization: Bearer <token>`."""
    if token and authorization:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return True
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class OutboxCollector:
    """leads_outbox_messages{status} and leads_outbox_oldest_due_seconds,
    from queue_state's two indexed statements; needs an app context."""

    def collect(self) -> Iterable[Metric]:
        try:
            state = queue_state()
        except SQLAlchemyError:
            # The counters are still worth a scrape; the gap in these
            # gauges (and /healthz) tell of the database.
            db.session.rollback()
            log.exception("outbox gauges left out of the scrape")
            return
        rows = GaugeMetricFamily(
            "leads_outbox_messages",
            "Outbox rows waiting, being sent, held or failed (sent: leads_mail_sent_total)",
            labels=["status"],
        )
        for status, count in state.counts.items():
            rows.add_metric([status], count)
        yield rows
        age = state.oldest_due_age
        yield GaugeMetricFamily(
            "leads_outbox_oldest_due_seconds",
            "Age of the oldest queued mail that is due (0: none)",
            value=age.total_seconds() if age else 0.0,
        )


class _ThisProcess:
    """The default registry (this process's own counts) as one collector."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes; every Prometheus reads it


def scrape() -> bytes:
    """The exposition, in Prometheus's text format (CONTENT_TYPE)."""
    registry = CollectorRegistry(auto_describe=False)
    if multiproc.enabled():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(OutboxCollector())
    return generate_latest(registry)


def serve_this_process(port: int, address: str) -> None:
    """A process outside gunicorn (flask worker) serves its own counts on
    port, from a daemon thread: every scrape of it answers for it alone."""
    start_http_server(port, addr=address, registry=REGISTRY)
