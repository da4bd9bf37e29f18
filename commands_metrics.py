"""--metrics-port and --metrics-address, for the long-running commands outside
gunicorn (flask worker, flask bounces serve and fetch): each serves its own
Prometheus metrics, since /metrics on the web processes cannot see them."""

from __future__ import annotations

import click


def metrics_options(command):
    command = click.option(
        "--metrics-address",
        default="127.0.0.1",
        show_default=True,
        help="The address --metrics-port listens on (0.0.0.0 or :: for every interface).",
    )(command)
    return click.option(
        "--metrics-port",
        type=click.IntRange(1, 65535),
        help="Serve this process's Prometheus metrics on this port, at /metrics.",
    )(command)


def start_metrics(port: int | None, address: str) -> None:
    """Serve them from a daemon thread when a port is given; one line if it
    cannot listen there."""
    if not port:
        return
    from services.metrics.exposition import serve_this_process

    try:
        serve_this_process(port, address)
    except OSError as exc:
        raise click.ClickException(
            f"--metrics-port {port} on {address}: {exc.strerror or exc}"
        ) from None
    click.echo(f"metrics on http://{address}:{port}/metrics")
