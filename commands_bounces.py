"""Flask CLI: `flask bounces serve` (SMTP) and `flask bounces fetch` (IMAP)."""

from __future__ import annotations

import signal
import threading

import click
from flask import current_app
from flask.cli import with_appcontext

from commands_metrics import metrics_options, start_metrics


@click.group("bounces")
def bounces_group() -> None:
    """Bounces and complaints that come back after a mail left."""


@bounces_group.command("serve")
@click.option("--port", default=2525, show_default=True, help="SMTP port to listen on")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@metrics_options
@with_appcontext
def bounces_serve(port: int, host: str, metrics_port: int | None, metrics_address: str) -> None:
    """Receive bounces over SMTP for MAIL_BOUNCE_ADDRESS (the MX or the local
    MTA forwards them here); every other recipient is refused."""
    from services.bounces.receiver import BounceController

    app = current_app._get_current_object()  # noqa: SLF001 (see worker_command)
    address = app.config.get("MAIL_BOUNCE_ADDRESS")
    if not address:
        raise click.ClickException(
            "MAIL_BOUNCE_ADDRESS (or BOUNCE_LOCAL and BOUNCE_DOMAIN) is not set: "
            "no mail carries a bounce address, so none would come here"
        )
    start_metrics(metrics_port, metrics_address)
    controller = BounceController(app, host, port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    controller.start()
    click.echo(f"bounces: receiving mail for {address} (and its tags) on {host}:{port}")
    try:
        while not stop.wait(1):
            pass
    finally:
        controller.stop()
    click.echo(f"bounces: stopped after storing {controller.handler.stored} messages")


@bounces_group.command("fetch")
@click.option(
    "--every",
    type=click.FloatRange(min=1),
    help="Read the mailbox again every SECONDS until SIGTERM. [default: once]",
)
@metrics_options
@with_appcontext
def bounces_fetch(every: float | None, metrics_port: int | None, metrics_address: str) -> None:
    """Read bounces and complaints from the BOUNCE_IMAP_* mailbox (IMAP over
    TLS); delete (or flag, BOUNCE_IMAP_AFTER=flag) each once it is stored."""
    from services.bounces import mailbox

    cfg = current_app.config
    if not cfg.get("BOUNCE_IMAP_HOST"):
        raise click.ClickException("BOUNCE_IMAP_HOST is not set: there is no mailbox to read")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    where = f"{cfg['BOUNCE_IMAP_USER']}@{cfg['BOUNCE_IMAP_HOST']}/{cfg['BOUNCE_IMAP_FOLDER']}"
    if every:
        click.echo(f"bounces: reading {where} every {every:g} s")
        start_metrics(metrics_port, metrics_address)
    while True:
        try:
            done = mailbox.fetch_once(stop.is_set)
        except mailbox.MailboxError as exc:
            if not every:
                raise click.ClickException(str(exc)) from None
            click.echo(f"bounces: {exc}", err=True)
        else:
            click.echo(f"bounces: processed={done.processed} too_large={done.too_large}")
        if not every or stop.wait(every):
            break
