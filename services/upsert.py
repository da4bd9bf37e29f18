"""INSERT ... ON CONFLICT, written once for SQLite and PostgreSQL (the syntax
is the same in both) as cacheable text statements.

SQLAlchemy's dialect-specific insert().on_conflict_...() constructs carry no
cache key, so they are compiled again on every call: on the signup path that
was a fifth of the request. These are compiled once per shape.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import bindparam, text
from sqlalchemy.sql.elements import TextClause

from extensions import db


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@lru_cache(maxsize=256)
def _statement(
    model, columns: tuple[str, ...], conflict: tuple[str, ...], add: tuple[str, ...]
) -> TextClause:
    table = model.__table__
    cols = ", ".join(_q(c) for c in columns)
    params = ", ".join(f":{c}" for c in columns)
    target = ", ".join(_q(c) for c in conflict)
    if add:
        action = "DO UPDATE SET " + ", ".join(
            f"{_q(c)} = {_q(table.name)}.{_q(c)} + excluded.{_q(c)}" for c in add
        )
    else:
        action = "DO NOTHING"
    # Identifiers come from the model's own table, values only as parameters.
    sql = f"INSERT INTO {_q(table.name)} ({cols}) VALUES ({params}) ON CONFLICT ({target}) {action}"  # noqa: S608
    return text(sql).bindparams(*(bindparam(c, type_=table.c[c].type) for c in columns))


def insert_ignore(model, values: dict, conflict: tuple[str, ...]) -> bool:
    """Insert a row unless one with the same conflict key exists; True when
    this call inserted it."""
    stmt = _statement(model, tuple(values), tuple(conflict), ())
    result = db.session.execute(stmt, values, execution_options={"preserve_rowcount": True})
    return result.rowcount == 1


def insert_or_add(model, key: dict, counters: dict[str, int]) -> None:
    """Insert the row, or add the counters to the row with the same key."""
    values = {**key, **counters}
    stmt = _statement(model, tuple(values), tuple(key), tuple(counters))
    db.session.execute(stmt, values)
