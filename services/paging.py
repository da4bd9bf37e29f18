"""Pages of rows newest first, by id: an 'older' link stays right while new
rows arrive, and no OFFSET walks past the rows already shown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select

from extensions import db

T = TypeVar("T")
# Ids are `Integer` columns: PostgreSQL's integer stops here (a larger value
# in a query is an error there, not an empty result).
MAX_ROW_ID = 2**31 - 1


class PagingError(ValueError):
    """A `before` that is no row id."""


@dataclass
class Page(Generic[T]):
    rows: list[T]
    next_before: int | None  # `before` for the next (older) page; None on the last


def parse_before(raw: str | None) -> int | None:
    """`before` from a query string: None (the first page) when absent or
    blank, else a row id; PagingError for anything else."""
    if raw is None or not raw.strip():
        return None
    value = raw.strip()
    digits = value.isascii() and value.isdigit() and len(value) <= len(str(MAX_ROW_ID))
    if not digits or not 1 <= int(value) <= MAX_ROW_ID:
        raise PagingError(f"before: a row id from 1 to {MAX_ROW_ID}")
    return int(value)


def newest_first(stmt: Select, id_column: Any, before: int | None, per_page: int) -> Page:
    """Rows of `stmt` with an id below `before` (all when None), newest first."""
    stmt = stmt.order_by(id_column.desc()).limit(per_page + 1)
    if before:
        stmt = stmt.where(id_column < before)
    rows = list(db.session.execute(stmt).scalars())
    more = len(rows) > per_page
    rows = rows[:per_page]
    return Page(rows=rows, next_before=rows[-1].id if more else None)
