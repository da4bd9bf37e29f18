"""Flask CLI: worker, content, outbox, serve, users, leads, dkim; bounces in
commands_bounces.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from commands_bounces import bounces_group
from commands_import import leads_import
from commands_metrics import metrics_options, start_metrics
from services.metrics import multiproc


@click.command("worker")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@metrics_options
@with_appcontext
def worker_command(once: bool, metrics_port: int | None, metrics_address: str) -> None:
    """Run the delivery worker (forever, or --once)."""
    from services.delivery.worker import Worker

    start_metrics(metrics_port, metrics_address)
    # The app itself, not the proxy: the worker's sender threads push their
    # own app contexts. LocalProxy._get_current_object is public API, as
    # Werkzeug's docs (werkzeug.local) describe it.
    app = current_app._get_current_object()  # noqa: SLF001
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
        where = f"mail is written as .eml files to {app.config['MAIL_FILE_DIR']}"
    elif backend == "smtp":
        where = f"mail goes to {app.config['MAIL_SERVER']}:{app.config['MAIL_PORT']}"
    else:
        where = "mail is printed on the console"
    signer = app.extensions.get("dkim")
    if signer:
        where += f", DKIM-signed ({signer.selector}._domainkey.{signer.domain})"
    return where


@click.group("content")
def content_group() -> None:
    """Articles in the content folder."""


@content_group.command("check")
@with_appcontext
def content_check() -> None:
    """List internal links to pages that do not exist (warnings); exit 1 only
    for links that look like a misspelt slug of an existing article."""
    store = current_app.extensions["articles"]
    dangling = store.dangling_links(_served_paths())
    misspelt = 0
    for slug, link in dangling:
        near = store.misspelt_slug(link)
        if near:
            misspelt += 1
            click.echo(f"error: {slug}: {link} does not exist; did you mean /{near}?")
        else:
            click.echo(f"warning: {slug}: {link} does not exist (yet)")
    if misspelt:
        click.echo(f"{misspelt} misspelt link(s), {len(dangling)} dangling in all", err=True)
        sys.exit(1)
    if dangling:
        click.echo(f"{len(dangling)} dangling link(s), none a misspelt slug", err=True)
    else:
        click.echo("all internal links resolve")


def _served_paths() -> set[str]:
    """Paths of the app's fixed routes (no variables): /, the training page,
    /subscribe, /login... Article paths are added by the article store."""
    return {
        rule.rule
        for rule in current_app.url_map.iter_rules()
        if not rule.arguments and "GET" in (rule.methods or ())
    }


@click.group("outbox")
def outbox_group() -> None:
    """The outbox: the queue and the delivery log."""


@outbox_group.command("status")
@with_appcontext
def outbox_status() -> None:
    """Counts by status, the oldest due row's age, recent errors."""
    from services.delivery.outbox_report import INBOUND_DAYS, status_report

    report = status_report()
    for status, count in report.counts.items():
        click.echo(f"{status:>10}: {count}")
    age = report.oldest_due_age
    click.echo(f"oldest due: {'none' if age is None else f'{age.total_seconds():.0f}s ago'}")
    if report.recent_errors:
        click.echo("recent errors:")
        for error, count in report.recent_errors:
            click.echo(f"  {count} × {error}")
    # Bad VERP signatures are forged or mangled bounces: ignored, but counted.
    came_back = ", ".join(f"{kind}={n}" for kind, n in report.inbound.items())
    click.echo(f"came back in {INBOUND_DAYS} days: {came_back}")


# A client that sends its header slowly holds a gunicorn thread until it is
# done. Threads start on demand and a held one costs about 60 kB, so each
# worker has enough for a slowloris script's 150 sockets on its own, with room
# to spare (measured: README, "Running at scale"; tests/test_slow_clients.py).
SERVE_THREADS = 256


@click.command("serve")
@click.option(
    "--port", type=int, default=lambda: current_app.config["PORT"], show_default="PORT or 5000"
)
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes")
@click.option(
    "--threads", default=SERVE_THREADS, show_default=True, help="threads per worker process"
)
def serve_command(port: int, workers: int, threads: int) -> None:
    """Web server and delivery worker in one command (what `make run` runs)."""
    app = current_app
    env = dict(os.environ)
    # The worker counts mail sent and SMTP errors beside the web workers, so
    # one scrape of /metrics shows them all.
    counts_dir = multiproc.start_serve(env, app.instance_path)
    click.echo(f"Mail: MAIL_BACKEND={app.config['MAIL_BACKEND']}; {_mail_destination(app)}")
    if workers > 1 and app.config["RATELIMIT_STORAGE_URI"].startswith("memory"):
        click.echo(
            f"Rate limits: kept in memory, so each of the {workers} web processes counts on "
            "its own. Set RATELIMIT_STORAGE_URI=redis://127.0.0.1:6379 to share them."
        )
    _first_admin_hint(port)
    worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "worker"], env=env)
    click.echo(f"Serving on http://127.0.0.1:{port}/  (Ctrl-C stops web and worker)")
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            # gunicorn's default control socket lives in ~/.gunicorn and is
            # taken over by the next gunicorn started: keep each run its own.
            "--no-control-socket",
            # Its hooks keep the web workers' Prometheus counts together.
            "--config",
            str(Path(__file__).resolve().parent / "gunicorn.conf.py"),
            # Threads: a long CSV export streams from one thread while the
            # worker keeps answering gunicorn's heartbeat; a sync worker is
            # killed at --timeout, cutting the download short.
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
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
        multiproc.worker_exited(worker.pid, counts_dir)


def _first_admin_hint(port: int) -> None:
    from services.staff.auth import any_user_exists

    if not any_user_exists():
        click.secho(
            "No staff account yet. Create the first admin (it asks for a password):\n"
            "  SECRET_KEY=$(cat instance/secret_key) .venv/bin/flask --app app "
            "users create you@example.com --role admin\n"
            f"then sign in at http://127.0.0.1:{port}/login",
            fg="yellow",
        )


@click.group("users")
def users_group() -> None:
    """Staff accounts."""


@users_group.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(["admin", "marketer"]), required=True)
@click.option("--password", help="Prompted for (twice) when not given.")
@with_appcontext
def users_create(email: str, role: str, password: str | None) -> None:
    """Create a staff user."""
    from extensions import db
    from services.staff.auth import AuthError, create_user

    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = create_user(email, password, role)
    except AuthError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"Created {user.role.value} {user.email}.")


@users_group.command("reset-2fa")
@click.argument("email")
@with_appcontext
def users_reset_two_factor(email: str) -> None:
    """Turn off a user's two-factor sign-in (phone and recovery codes lost)."""
    from extensions import db
    from services.staff import account
    from services.staff.auth import AuthError, user_by_email

    user = user_by_email(email)
    if user is None:
        raise click.ClickException(f"No user {email.strip().lower()}.")
    try:
        ended = account.reset_two_factor(user, by=None)
    except AuthError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"Two-factor sign-in is off for {user.email}; {ended} session(s) ended.")


@click.group("leads")
def leads_group() -> None:
    """Leads: export, import, and test data."""


leads_group.add_command(leads_import)


@leads_group.command("export")
@click.option("--status", default="")
@click.option("--topic", default="")
@click.option("--source", default="", help="article slug")
@click.option("--placement", default="")
@click.option("--utm-source", default="")
@click.option("--utm-campaign", default="")
@click.option("--q", default="", help="email or name prefix")
@click.option("--since", default="", help="YYYY-MM-DD")
@click.option("--until", default="", help="YYYY-MM-DD")
@click.option("--sort", default="newest")
@click.option("--excel", is_flag=True, help="Start with a BOM for Excel.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), required=True)
@with_appcontext
def leads_export(output: str, excel: bool, **raw) -> None:
    """Write the same CSV as the web export."""
    from extensions import db
    from services.reporting import export, lead_query

    try:
        filters = lead_query.LeadFilters.parse({k: v for k, v in raw.items() if v})
    except lead_query.FilterError as exc:
        raise click.BadParameter(str(exc)) from exc
    total, _ = lead_query.count(filters, cap=10**9)
    counter = [0]
    with (
        open(output, "wb") as fh,
        click.progressbar(length=total, label=f"Exporting {total:,} leads", file=sys.stderr) as bar,
    ):
        for chunk in export.iter_csv(filters, excel=excel, on_progress=bar.update, counter=counter):
            fh.write(chunk)
    db.session.rollback()  # end the read before writing the audit row
    export.record_export(None, filters, counter[0], completed=True, target=output, via="cli")
    db.session.commit()
    click.echo(f"Wrote {counter[0]:,} leads to {output}", err=True)


@leads_group.command("generate")
@click.argument("count", type=int)
@click.option(
    "--days",
    default=365,
    type=click.IntRange(1, 3650),  # signups after 2000, as services.dates expects
    help="spread signups over this many days (up to 3650)",
)
@click.option("--seed", default=1)
@with_appcontext
def leads_generate(count: int, days: int, seed: int) -> None:
    """Make COUNT fake leads (for trying the workspace at scale, and benchmarks)."""
    from devtools.fake_data import generate_leads

    with click.progressbar(
        length=count, label=f"Generating {count:,} leads", file=sys.stderr
    ) as bar:
        made = generate_leads(count, days=days, seed=seed, on_progress=bar.update)
    click.echo(f"Made {made:,} leads.", err=True)


@click.group("dkim")
def dkim_group() -> None:
    """DKIM: the signing key and its DNS record."""


@dkim_group.command("keygen")
@click.option("--selector", required=True, help="The DKIM selector the key is published under.")
@click.option("--domain", help="The signing domain. [default: DKIM_DOMAIN, else the From domain]")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The key file. [default: DKIM_PRIVATE_KEY_FILE for DKIM_SELECTOR, "
    "else instance/dkim/SELECTOR.pem]",
)
@click.option("--force", is_flag=True, help="Replace an existing key file.")
@with_appcontext
def dkim_keygen(selector: str, domain: str | None, output: Path | None, force: bool) -> None:
    """Write a 2048-bit RSA key (mode 0600) and print the DNS TXT record to publish."""
    from services.mail import dkim
    from services.mail.compose import sender_domain

    cfg = current_app.config
    path = output or dkim.default_key_file(cfg, current_app.instance_path, selector)
    domain = (domain or cfg.get("DKIM_DOMAIN") or sender_domain()).lower().rstrip(".")
    try:
        dkim.generate_key(path, force=force)
        public_key = dkim.public_key_b64(path)
    except FileExistsError:
        raise click.ClickException(
            f"{path} exists: give --force to replace it (mail signed with the new key fails "
            "to verify until its record is published), or make a key for a new selector"
        ) from None
    except dkim.DkimKeyError as exc:
        raise click.ClickException(str(exc)) from None
    name, value = dkim.dns_record(selector, domain, public_key)
    click.echo(f"Wrote a {dkim.KEY_BITS}-bit RSA key to {path} (mode 0600).\n")
    click.echo("Publish this DNS TXT record:\n")
    click.echo(f"  name:  {name}")
    click.echo(f"  value: {value}\n")
    click.echo(
        "In a zone file, a value over 255 bytes is split into quoted strings "
        "that resolvers join back into one:\n"
    )
    click.echo(dkim.zone_file_line(name, value) + "\n")
    click.echo(
        f"Once it is published (dig +short TXT {name}), sign mail with: "
        f"DKIM_DOMAIN={domain} DKIM_SELECTOR={selector} DKIM_PRIVATE_KEY_FILE={path}"
    )


def register_commands(app: Flask) -> None:
    app.cli.add_command(worker_command)
    app.cli.add_command(content_group)
    app.cli.add_command(outbox_group)
    app.cli.add_command(serve_command)
    app.cli.add_command(users_group)
    app.cli.add_command(leads_group)
    app.cli.add_command(dkim_group)
    app.cli.add_command(bounces_group)
