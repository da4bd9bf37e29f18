"""Flask CLI: worker, content, outbox, serve."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from services.content import TRAINING_PATH


@click.command("worker")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@with_appcontext
def worker_command(once: bool) -> None:
    """Run the delivery worker (forever, or --once)."""
    from services.delivery import Worker

    app = current_app._get_current_object()
    worker = Worker(app)
    worker.install_signal_handlers()
    if not once:
        click.echo(
            f"worker {worker.owner}: delivering with MAIL_BACKEND="
            f"{app.config['MAIL_BACKEND']} ({_mail_destination(app)})"
        )
    total = worker.run(once=once)
    if once:
        click.echo(
            f"sent={total.sent} retried={total.retried} failed={total.failed} "
            f"skipped={total.skipped}"
        )


def _mail_destination(app: Flask) -> str:
    backend = app.config["MAIL_BACKEND"]
    if backend == "file":
        return f"mail is written as .eml files to {app.config['MAIL_FILE_DIR']}"
    if backend == "smtp":
        return f"mail goes to {app.config['MAIL_SERVER']}:{app.config['MAIL_PORT']}"
    return "mail is printed on the console"


@click.group("content")
def content_group() -> None:
    """Articles in the content folder."""


@content_group.command("check")
@with_appcontext
def content_check() -> None:
    """List internal links to pages that do not exist; exit 1 if any."""
    known = {"/", TRAINING_PATH}
    dangling = current_app.extensions["articles"].dangling_links(known)
    for slug, link in dangling:
        click.echo(f"{slug}: {link} does not exist")
    if dangling:
        click.echo(f"{len(dangling)} dangling link(s)", err=True)
        sys.exit(1)
    click.echo("all internal links resolve")


@click.group("outbox")
def outbox_group() -> None:
    """The outbox: the queue and the delivery log."""


@outbox_group.command("status")
@with_appcontext
def outbox_status() -> None:
    """Counts by status, the oldest due row's age, recent errors."""
    from services.outbox_report import status_report

    report = status_report()
    for status, count in report.counts.items():
        click.echo(f"{status:>10}: {count}")
    age = report.oldest_due_age
    click.echo(f"oldest due: {'none' if age is None else f'{age.total_seconds():.0f}s ago'}")
    if report.recent_errors:
        click.echo("recent errors:")
        for error, count in report.recent_errors:
            click.echo(f"  {count} × {error}")


@click.command("serve")
@click.option("--port", default=lambda: int(os.environ.get("PORT", 5000)), show_default="5000")
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes")
def serve_command(port: int, workers: int) -> None:
    """Web server and delivery worker in one command (what `make run` runs)."""
    app = current_app
    env = dict(os.environ)
    click.echo(f"Mail: MAIL_BACKEND={app.config['MAIL_BACKEND']}; {_mail_destination(app)}")
    _first_admin_hint()
    worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "worker"], env=env)
    click.echo(f"Serving on http://127.0.0.1:{port}/  (Ctrl-C stops web and worker)")
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--access-logfile",
            "-",
            "app:create_app()",
        ],
        env=env,
    )

    def _stop(*_args):
        for proc in (web, worker):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        web.wait()
    finally:
        _stop()
        worker.wait(timeout=60)


def _first_admin_hint() -> None:
    hint = current_app.extensions.get("first_admin_hint")
    if hint:
        hint()


def register_commands(app: Flask) -> None:
    app.cli.add_command(worker_command)
    app.cli.add_command(content_group)
    app.cli.add_command(outbox_group)
    app.cli.add_command(serve_command)
