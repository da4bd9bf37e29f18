"""An import uploaded on the page: stored in the database (services.imports.files
says why), its mapping confirmed, checked by a dry run, then queued for a
worker. The caller commits."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import BinaryIO

from models import ImportStatus, LeadImport, User
from services.imports import files, jobs, reader
from services.staff import audit

PREVIEW_ROWS = 5


def receive(
    stream: BinaryIO,
    filename: str,
    *,
    topic_slugs: list[str],
    source: str | None,
    consent_text: str,
    confirm_by_mail: bool,
    user: User,
) -> LeadImport:
    """Store the upload and guess its mapping; raises ImportProblem or
    ImportFileError with the reason to show."""
    job = jobs.create(
        files.FileInfo(),
        filename,
        topic_slugs=topic_slugs,
        source=source,
        consent_text=consent_text,
        confirm_by_mail=confirm_by_mail,
        user=user,
        actor=user.email,
        status=ImportStatus.UPLOADED,
    )

    def stored() -> Iterator[bytes]:
        for seq, chunk in enumerate(files.file_chunks(stream)):
            files.store_chunk(job, seq, chunk)
            yield chunk

    info = files.inspect(stored(), lambda: files.open_stored(job))
    if info.size == 0:
        raise reader.ImportFileError("The file is empty.")
    job.size, job.sha256, job.encoding, job.stored = info.size, info.sha256, info.encoding, True
    mapping = reader.guess_mapping(info.header)
    job.mapping = {"columns": info.header, "fields": {str(i): f for i, f in mapping.items()}}
    audit.record(user, "leads.import_uploaded", job.public_id, file=job.filename, bytes=job.size)
    return job


def preview(job: LeadImport) -> list[list[str]]:
    """The first few records, as the mapping form shows them."""
    with files.open_stored(job) as binary:
        _, records = reader.records(reader.text_stream(binary, job.encoding))
        return [r.values for r in itertools.islice(records, PREVIEW_ROWS) if r.refused is None]


def confirm_mapping(job: LeadImport, fields: dict[int, str], user: User) -> None:
    """The mapping as the marketer confirmed it: a worker makes the dry run."""
    if job.status not in (ImportStatus.UPLOADED, ImportStatus.CHECKED):
        raise jobs.ImportProblem("This import has started already; its mapping is fixed.")
    reader.check_mapping(fields, len(job.mapping["columns"]))
    job.mapping = {**job.mapping, "fields": {str(i): f for i, f in fields.items()}}
    job.status, job.dry_run = ImportStatus.CHECKING, None
    audit.record(user, "leads.import_checked", job.public_id, mapping=job.mapping["fields"])


def start(job: LeadImport, user: User) -> None:
    """The go, after the dry run: a worker imports it."""
    if job.status != ImportStatus.CHECKED:
        raise jobs.ImportProblem("Check the file with a dry run first.")
    job.status = ImportStatus.QUEUED
    audit.record(user, "leads.import", job.public_id, file=job.filename, via="web")


def cancel(job: LeadImport, user: User) -> None:
    """Drop an import that has not started; its stored file goes with it."""
    if job.status not in (ImportStatus.UPLOADED, ImportStatus.CHECKED):
        raise jobs.ImportProblem("Only an import that has not started can be cancelled.")
    job.status = ImportStatus.CANCELLED
    files.drop_file(job)
    audit.record(user, "leads.import_cancelled", job.public_id, file=job.filename)


def in_progress(job: LeadImport) -> bool:
    return job.status in (ImportStatus.CHECKING, ImportStatus.QUEUED, ImportStatus.RUNNING)
