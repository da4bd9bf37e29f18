"""A CSV import of leads: the job (its file, options, progress and
counts), the file's bytes in chunks, and the lines it refused or warned about."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, new_public_id, string_enum, utcnow


class ImportStatus(enum.StrEnum):
    UPLOADED = "uploaded"  # stored, mapping not confirmed yet
    CHECKING = "checking"  # mapping confirmed: a worker makes the dry run
    CHECKED = "checked"  # dry run counts shown, waiting for the go
    QUEUED = "queued"  # confirmed: a worker takes it
    RUNNING = "running"  # a worker (or the CLI) holds its lease
    DONE = "done"
    FAILED = "failed"  # stopped part-way: resumable from rows_done
    CANCELLED = "cancelled"


class LeadImport(Base):
    __tablename__ = "lead_import"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True, default=new_public_id)
    status: Mapped[ImportStatus] = mapped_column(
        string_enum(ImportStatus, "import_status"), default=ImportStatus.UPLOADED
    )
    # The evidence an imported lead's consent event points at: which file,
    # on what stated basis, who imported it and when.
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int]
    consent_hash: Mapped[str] = mapped_column(ForeignKey("consent_text.hash"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(320))  # outlives the account, like the audit log
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Options: topics (comma-separated slugs), the source label, and whether
    # leads stay pending until they confirm by mail.
    topics: Mapped[str] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(200))
    confirm_by_mail: Mapped[bool] = mapped_column(default=False)
    encoding: Mapped[str] = mapped_column(String(20))
    mapping: Mapped[dict] = mapped_column(JSON, default=dict)  # column index -> field
    stored: Mapped[bool] = mapped_column(default=False)  # the bytes are in lead_import_chunk
    # Progress, committed with each batch: a resumed run skips rows_done records.
    rows_done: Mapped[int] = mapped_column(default=0)
    new: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    refused: Mapped[int] = mapped_column(default=0)
    warnings: Mapped[int] = mapped_column(default=0)
    dry_run: Mapped[dict | None] = mapped_column(JSON)  # the counts a dry run gave
    owner: Mapped[str | None] = mapped_column(String(120))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_lead_import_status_lease", "status", "lease_until"),)


class LeadImportChunk(Base):
    """An uploaded file, in pieces: every web and worker host reads the same
    database, not the same disk, and a piece at a time keeps memory bounded."""

    __tablename__ = "lead_import_chunk"

    import_id: Mapped[int] = mapped_column(
        ForeignKey("lead_import.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class LeadImportIssue(Base):
    """A line of the file that was refused, or imported with a warning."""

    __tablename__ = "lead_import_issue"

    id: Mapped[int] = mapped_column(primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("lead_import.id", ondelete="CASCADE"))
    line: Mapped[int]
    refused: Mapped[bool]
    reason: Mapped[str] = mapped_column(String(300))

    __table_args__ = (Index("ix_lead_import_issue_import_id_line", "import_id", "line"),)
