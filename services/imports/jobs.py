"""Import jobs: a file (on disk for the command line, in the database for
an upload), its options and progress, run batch by batch.

Each batch is one transaction holding its leads, its issues and the job's
progress, so a run that dies part-way leaves whole batches only, and the
next run (`--resume`, or another worker once the lease has run out) skips
the records already done. The lease is also the fencing token: a batch
commits only while its run still owns the job.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import BinaryIO

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from extensions import db
from models import ImportStatus, LeadImport, LeadImportIssue, User
from services import clock
from services.imports import apply, checking, files, reader
from services.imports.reader import Candidate
from services.leads import consent, topics

log = logging.getLogger("leads.imports")
PASSING_ERRORS = (OperationalError, InterfaceError)
BATCH_ROWS = 5000
LEASE = timedelta(seconds=60)
# A dry run keeps this many issues to show; the counts cover them all.
DRY_RUN_ISSUES = 500
CLAIMABLE = (ImportStatus.CHECKING, ImportStatus.QUEUED, ImportStatus.RUNNING)


class ImportProblem(ValueError):
    """An import that cannot start or go on, with the reason to show."""


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def chosen_topics(slugs: list[str]) -> list[str]:
    unknown = set(slugs) - set(topics.TOPICS)
    if unknown or not slugs:
        raise ImportProblem(f"Topics are one or more of: {', '.join(topics.TOPICS)}.")
    return topics.clean(slugs)


def create(
    info: files.FileInfo,
    filename: str,
    *,
    topic_slugs: list[str],
    source: str | None,
    consent_text: str,
    confirm_by_mail: bool,
    user: User | None,
    actor: str,
    status: ImportStatus,
) -> LeadImport:
    chosen = chosen_topics(topic_slugs)
    if not consent_text.strip():
        raise ImportProblem("State the basis of consent (what these people agreed to).")
    mapping = reader.guess_mapping(info.header)
    job = LeadImport(
        filename=filename[:255],
        sha256=info.sha256,
        size=info.size,
        consent_hash=consent.record_text(consent_text.strip()),
        user_id=user.id if user else None,
        actor=actor,
        created_at=clock.now(),
        topics=",".join(chosen),
        source=(source or "").strip()[: reader.MAX_LENGTHS["source"]] or None,
        confirm_by_mail=confirm_by_mail,
        encoding=info.encoding,
        mapping={"columns": info.header, "fields": {str(i): f for i, f in mapping.items()}},
        status=status,
    )
    db.session.add(job)
    db.session.flush()
    return job


def mapping_of(job: LeadImport) -> dict[int, str]:
    return {int(i): f for i, f in job.mapping["fields"].items()}


def options_of(job: LeadImport) -> apply.Options:
    return apply.Options(
        topics=tuple(job.topics.split(",")),
        source=job.source,
        consent_hash=job.consent_hash,
        confirm_by_mail=job.confirm_by_mail,
        import_id=job.id,
    )


@dataclass
class Batch:
    records: int
    candidates: list[Candidate]
    refused: list[tuple[int, str]]


def batches(
    binary: BinaryIO, encoding: str, mapping: dict[int, str], opts: apply.Options, skip: int = 0
) -> Iterator[Batch]:
    """The file's records after the first `skip`, BATCH_ROWS at a time, each
    checked. The next batch's addresses are checked (see `checking`) while
    the caller writes this one."""
    try:
        with checking.AddressChecker() as checker:
            waiting: Batch | None = None
            for batch in _unchecked(binary, encoding, mapping, opts, skip):
                if waiting is not None:
                    _with_addresses(waiting, checker.result())
                    checker.in_parallel()  # a file of more than one batch
                checker.send([c.email for c in batch.candidates])
                if waiting is not None:
                    yield waiting
                waiting = batch
            if waiting is not None:
                yield _with_addresses(waiting, checker.result())
    except checking.CheckingStopped as exc:
        raise ImportProblem(str(exc)) from exc


def _unchecked(
    binary: BinaryIO, encoding: str, mapping: dict[int, str], opts: apply.Options, skip: int
) -> Iterator[Batch]:
    """The batches with every check but the addresses' made."""
    header, records = reader.records(reader.text_stream(binary, encoding))
    reader.check_mapping(mapping, len(header))
    batch = Batch(0, [], [])
    for record in itertools.islice(records, skip, None):
        batch.records += 1
        found = (
            reader.candidate(record, mapping, opts.topics, opts.source)
            if record.refused is None
            else record.refused
        )
        if isinstance(found, str):
            batch.refused.append((record.line, found))
        else:
            batch.candidates.append(found)
        if batch.records == BATCH_ROWS:
            yield batch
            batch = Batch(0, [], [])
    if batch.records:
        yield batch


def _with_addresses(batch: Batch, checked: list) -> Batch:
    candidates = []
    for c, address in zip(batch.candidates, checked, strict=True):
        found = reader.with_address(c, address)
        if isinstance(found, str):
            batch.refused.append((c.line, found))
        else:
            candidates.append(found)
    batch.candidates = candidates
    return batch


def check(
    binary: BinaryIO,
    encoding: str,
    mapping: dict[int, str],
    opts: apply.Options,
    on_progress: Callable[[int], None] | None = None,
) -> apply.Outcome:
    """A dry run: the counts and issues an import would give; writes nothing."""
    total, seen = apply.Outcome(), {}
    conn = db.session.connection()
    for batch in batches(binary, encoding, mapping, opts):
        out = apply.run_batch(conn, batch.candidates, opts, clock.now(), write=False, seen=seen)
        for line, reason in batch.refused:
            out.refuse(line, reason)
        total.add(out)
        room = DRY_RUN_ISSUES - len(total.issues)
        total.issues.extend(sorted(out.issues)[: max(room, 0)])
        if on_progress:
            on_progress(batch.records)
    db.session.rollback()
    return total


def run(
    job: LeadImport,
    binary: BinaryIO,
    owner: str,
    on_progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> LeadImport:
    """Import the job's file from where it stopped, a batch per transaction.
    The job must be held (status running, this owner)."""
    opts, job_id = options_of(job), job.id
    for batch in batches(binary, job.encoding, mapping_of(job), opts, skip=job.rows_done):
        now = clock.now()
        conn = db.session.connection()
        out = apply.run_batch(conn, batch.candidates, opts, now, write=True)
        for line, reason in batch.refused:
            out.refuse(line, reason)
        if out.issues:
            conn.execute(
                insert(LeadImportIssue),
                [
                    {"import_id": job_id, "line": line, "refused": refused, "reason": reason[:300]}
                    for line, refused, reason in sorted(out.issues)
                ],
            )
        t = LeadImport.__table__.c
        moved = conn.execute(
            update(LeadImport.__table__)
            .where(t.id == job_id, t.owner == owner, t.status == ImportStatus.RUNNING)
            .values(
                rows_done=t.rows_done + batch.records,
                lease_until=now + LEASE,
                **{k: t[k] + v for k, v in out.counts().items()},
            )
        ).rowcount
        if moved != 1:  # the lease ran out and another run took the job over
            db.session.rollback()
            raise ImportProblem("another process took this import over")
        db.session.commit()
        if on_progress:
            on_progress(batch.records)
        if should_stop():  # give the rest to the next worker at once
            db.session.execute(
                update(LeadImport)
                .where(LeadImport.id == job_id, LeadImport.owner == owner)
                .values(lease_until=None)
            )
            db.session.commit()
            return db.session.get(LeadImport, job_id)
    db.session.execute(
        update(LeadImport)
        .where(LeadImport.id == job_id, LeadImport.owner == owner)
        .values(status=ImportStatus.DONE, finished_at=clock.now(), lease_until=None)
    )
    files.drop_file(job)
    db.session.commit()
    return db.session.get(LeadImport, job_id)


def fail(job_id: int, owner: str, error: str) -> None:
    """Stopped part-way: the committed batches stay, and it can be resumed."""
    db.session.rollback()
    db.session.execute(
        update(LeadImport)
        .where(LeadImport.id == job_id, LeadImport.owner == owner)
        .values(status=ImportStatus.FAILED, error=error[:2000], lease_until=None)
    )
    db.session.commit()


def take(
    job_id: int, owner: str, statuses: tuple[ImportStatus, ...], new_status: ImportStatus
) -> bool:
    """Hold the job for this run: compare-and-set on its status and lease."""
    now = clock.now()
    taken = db.session.execute(
        update(LeadImport)
        .where(
            LeadImport.id == job_id,
            LeadImport.status.in_(statuses),
            or_(LeadImport.lease_until.is_(None), LeadImport.lease_until < now),
        )
        .values(status=new_status, owner=owner, lease_until=now + LEASE, started_at=now, error=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return taken == 1


def unfinished_for(sha256: str) -> LeadImport | None:
    """An earlier command-line import of the same bytes that did not finish."""
    return db.session.execute(
        select(LeadImport)
        .where(
            LeadImport.sha256 == sha256,
            LeadImport.stored.is_(False),
            LeadImport.status.in_([ImportStatus.RUNNING, ImportStatus.FAILED]),
        )
        .order_by(LeadImport.id.desc())
        .limit(1)
    ).scalar()


def owner_gone(owner: str | None) -> bool:
    """The run holding the lease was a process on this host that has died
    (killed mid-import): its lease need not be waited out."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def run_next(owner: str, should_stop: Callable[[], bool] = lambda: False) -> bool:
    """Take one uploaded import or dry run that is due (or whose run died:
    its lease ran out) and run it. False when there was none."""
    now = clock.now()
    due = db.session.execute(
        select(LeadImport.id, LeadImport.status)
        .where(
            LeadImport.stored.is_(True),
            LeadImport.status.in_(CLAIMABLE),
            or_(LeadImport.lease_until.is_(None), LeadImport.lease_until < now),
        )
        .order_by(LeadImport.id)
        .limit(1)
    ).first()
    db.session.rollback()
    if due is None:
        return False
    job_id, status = due
    checking = status == ImportStatus.CHECKING
    new_status = ImportStatus.CHECKING if checking else ImportStatus.RUNNING
    if not take(job_id, owner, (status,), new_status):
        return True  # another worker took it: look again
    job = db.session.get(LeadImport, job_id)
    try:
        with files.open_stored(job) as binary:
            if checking:
                _record_check(job, check(binary, job.encoding, mapping_of(job), options_of(job)))
            else:
                run(job, binary, owner, should_stop=should_stop)
    except (reader.ImportFileError, ImportProblem) as exc:
        fail(job_id, owner, str(exc))
    except PASSING_ERRORS:
        raise  # a lock or a lost connection: resumed once the lease runs out
    except Exception as exc:  # the job's own: given up with its reason, never retried for ever
        log.exception("import %s failed", job_id)
        fail(job_id, owner, f"{type(exc).__name__}: {exc}")
    return True


def _record_check(job: LeadImport, outcome: apply.Outcome) -> None:
    db.session.execute(
        update(LeadImport)
        .where(LeadImport.id == job.id, LeadImport.status == ImportStatus.CHECKING)
        .values(
            status=ImportStatus.CHECKED,
            lease_until=None,
            dry_run={**outcome.counts(), "issues": [list(i) for i in outcome.issues]},
        )
    )
    db.session.commit()
