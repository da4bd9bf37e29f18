"""What an import did, for the command's summary and the import page."""

from __future__ import annotations

from sqlalchemy import select

from extensions import db
from models import LeadImport, LeadImportIssue

COUNTS = ("new", "updated", "unchanged", "refused", "warnings")


def counts(job: LeadImport) -> dict[str, int]:
    return {name: getattr(job, name) for name in COUNTS}


def issues(import_id: int, limit: int) -> list[tuple[int, bool, str]]:
    """The first `limit` refused and warned lines, in line order."""
    rows = db.session.execute(
        select(LeadImportIssue.line, LeadImportIssue.refused, LeadImportIssue.reason)
        .where(LeadImportIssue.import_id == import_id)
        .order_by(LeadImportIssue.line, LeadImportIssue.id)
        .limit(limit)
    ).all()
    return [tuple(r) for r in rows]


def by_public_id(public_id: str) -> LeadImport | None:
    return db.session.execute(
        select(LeadImport).where(LeadImport.public_id == public_id)
    ).scalar_one_or_none()


def recent(limit: int = 20) -> list[LeadImport]:
    return list(
        db.session.execute(select(LeadImport).order_by(LeadImport.id.desc()).limit(limit)).scalars()
    )


def progress(job: LeadImport) -> dict:
    """The page's progress figures (also served as JSON to its script)."""
    return {
        "status": job.status.value,
        "rows_done": job.rows_done,
        **counts(job),
        "error": job.error,
        "finished": job.status.value in ("checked", "done", "failed", "cancelled"),
    }


def source_labels(limit: int = 200) -> list[str]:
    """The source labels imports were given, for the lead browser's source
    filter: read off the import jobs (a few rows), never the lead table."""
    rows = db.session.execute(
        select(LeadImport.source)
        .where(LeadImport.source.is_not(None), LeadImport.source != "")
        .group_by(LeadImport.source)
        .order_by(LeadImport.source)
        .limit(limit)
    ).scalars()
    return list(rows)
