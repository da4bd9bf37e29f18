"""An import's file: one pass for its size, digest, encoding and header,
and an upload kept in the database in chunks and read back one at a time.

The database rather than instance/: the web process that receives an upload
and the worker that imports it may be on different hosts, and the database
is what they share.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from sqlalchemy import delete, insert, select

from extensions import db
from models import LeadImport, LeadImportChunk
from services.imports import reader


@dataclass
class FileInfo:
    """What one pass over the bytes tells: size, digest, encoding, header."""

    size: int = 0
    sha256: str = ""
    encoding: str = "utf-8"
    header: list[str] = field(default_factory=list)


def inspect(chunks: Iterator[bytes], open_again: Callable[[], BinaryIO]) -> FileInfo:
    """Size, SHA-256 and encoding in one pass over `chunks`; then the header
    from the start of the file, opened again."""
    digest, sniffer, info = hashlib.sha256(), reader.EncodingSniffer(), FileInfo()
    for chunk in chunks:
        info.size += len(chunk)
        digest.update(chunk)
        sniffer.feed(chunk)
    info.sha256, info.encoding = digest.hexdigest(), sniffer.encoding
    with open_again() as binary:
        info.header, _ = reader.records(reader.text_stream(binary, info.encoding))
    return info


def file_chunks(binary: BinaryIO) -> Iterator[bytes]:
    while chunk := binary.read(reader.CHUNK_BYTES):
        yield chunk


def store_chunk(job: LeadImport, seq: int, chunk: bytes) -> None:
    """Keep a piece of an upload's bytes in the database."""
    db.session.execute(insert(LeadImportChunk), {"import_id": job.id, "seq": seq, "data": chunk})


def drop_file(job: LeadImport) -> None:
    """A finished or cancelled upload's bytes are not needed any more."""
    db.session.execute(delete(LeadImportChunk).where(LeadImportChunk.import_id == job.id))


class StoredFile(io.RawIOBase):
    """An upload read back from its chunks, one at a time."""

    def __init__(self, import_id: int) -> None:
        self.import_id, self.seq, self.pending = import_id, 0, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self.pending:
            self.pending = (
                db.session.execute(
                    select(LeadImportChunk.data).where(
                        LeadImportChunk.import_id == self.import_id,
                        LeadImportChunk.seq == self.seq,
                    )
                ).scalar()
                or b""
            )
            self.seq += 1
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def open_stored(job: LeadImport) -> BinaryIO:
    return io.BufferedReader(StoredFile(job.id), reader.CHUNK_BYTES)
