"""flask leads import: a CSV file of leads from a spreadsheet or CRM."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask.cli import with_appcontext

# Refused lines printed by the command; the job keeps them all.
SHOWN_ISSUES = 50


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--topic",
    "topic_slugs",
    multiple=True,
    required=True,
    help="topic slug every lead gets (repeat for several)",
)
@click.option("--source", default=None, help="source label for leads without a source column")
@click.option("--consent", "consent_text", required=True, help="the stated basis of consent")
@click.option("--confirm", is_flag=True, help="leads stay pending and get a confirmation mail")
@click.option("--dry-run", is_flag=True, help="count what would happen; write nothing")
@click.option("--resume", is_flag=True, help="go on with an import of this file that stopped")
@with_appcontext
def leads_import(
    file: Path,
    topic_slugs: tuple[str, ...],
    source: str | None,
    consent_text: str,
    confirm: bool,
    dry_run: bool,
    resume: bool,
) -> None:
    """Import leads from FILE (CSV, UTF-8 or Windows-1252, header on line 1).

    Unsubscribed, suppressed and erased addresses are never imported, and
    existing leads keep their status and consent record."""
    from extensions import db
    from models import ImportStatus
    from services.imports import apply, files, jobs, reader, report
    from services.staff import audit

    with file.open("rb") as binary:
        info = files.inspect(files.file_chunks(binary), lambda: file.open("rb"))
    mapping = reader.guess_mapping(info.header)
    click.echo(f"{file.name}: {info.encoding}, {info.size:,} bytes", err=True)
    for index, name in enumerate(info.header):
        click.echo(f"  column {index + 1} {name!r} -> {mapping.get(index, '(left out)')}", err=True)
    try:
        if dry_run:
            opts = apply.Options(
                tuple(jobs.chosen_topics(list(topic_slugs))), source, "", confirm, None
            )
            with file.open("rb") as binary, _bar("Checking", info.size) as bar:
                outcome = jobs.check(binary, info.encoding, mapping, opts, _advance(bar, binary))
            _report(outcome.counts(), outcome.issues, "would be")
            return
        job = _job_for(file, info, resume, topic_slugs, source, consent_text, confirm)
    except (jobs.ImportProblem, reader.ImportFileError) as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    owner = jobs.this_process()
    if not jobs.take(
        job.id, owner, (ImportStatus.RUNNING, ImportStatus.FAILED), ImportStatus.RUNNING
    ):
        raise click.ClickException(
            f"import {job.public_id} is running in {job.owner} until its lease ends "
            f"({job.lease_until:%H:%M:%S} UTC) or it stops"
        )
    if not resume:
        audit.record(None, "leads.import", job.public_id, file=file.name, via="cli")
        db.session.commit()
    job_id = job.id
    try:
        with file.open("rb") as binary, _bar("Importing", info.size) as bar:
            job = jobs.run(job, binary, owner, on_progress=_advance(bar, binary))
    except BaseException as exc:  # Ctrl-C too: the committed batches stay
        jobs.fail(job_id, owner, f"{type(exc).__name__}: {exc}")
        click.echo("Stopped; run the same command with --resume to go on.", err=True)
        if isinstance(exc, (jobs.ImportProblem, reader.ImportFileError)):
            raise click.ClickException(str(exc)) from None
        raise
    _report(report.counts(job), report.issues(job_id, SHOWN_ISSUES), "")


def _job_for(file, info, resume, topic_slugs, source, consent_text, confirm):
    from models import ImportStatus
    from services.imports import jobs

    earlier = jobs.unfinished_for(info.sha256)
    if resume:
        if earlier is None:
            raise jobs.ImportProblem(f"No unfinished import of {file.name} to resume.")
        if earlier.lease_until and jobs.owner_gone(earlier.owner):
            earlier.lease_until = None  # its process died: no need to wait the lease out
        return earlier
    if earlier is not None:
        raise jobs.ImportProblem(
            f"An import of this file stopped after {earlier.rows_done:,} rows "
            f"({earlier.status.value}): add --resume to go on with it."
        )
    return jobs.create(
        info,
        file.name,
        topic_slugs=list(topic_slugs),
        source=source,
        consent_text=consent_text,
        confirm_by_mail=confirm,
        user=None,
        actor="cli",
        status=ImportStatus.RUNNING,
    )


def _bar(label: str, size: int):
    return click.progressbar(length=max(size, 1), label=label, file=sys.stderr)


def _advance(bar, binary):
    """Progress by bytes read: the row count is not known before the end.
    (The text stream closes the file once the last record is read.)"""
    return lambda _records: bar.update((bar.length if binary.closed else binary.tell()) - bar.pos)


def _report(counts: dict[str, int], issues, verb: str) -> None:
    for line, refused, reason in issues[:SHOWN_ISSUES]:
        click.echo(f"line {line}: {'refused' if refused else 'warning'}: {reason}")
    shown = min(len(issues), SHOWN_ISSUES)
    if counts["refused"] + counts["warnings"] > shown:
        click.echo(f"... {counts['refused'] + counts['warnings'] - shown} more issue(s)")
    prefix = f"{verb} " if verb else ""
    click.echo(
        f"{prefix}new={counts['new']} updated={counts['updated']} "
        f"unchanged={counts['unchanged']} refused={counts['refused']} "
        f"warnings={counts['warnings']}".strip()
    )
