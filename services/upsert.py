"""INSERT and INSERT ... ON CONFLICT through SQLAlchemy, on SQLite and PostgreSQL.

The ON CONFLICT forms are the dialects' own constructs (`dialect_insert`).
SQLAlchemy 2.0 gives those no cache key (their Insert sets inherit_cache =
False), so it compiles them again on every execution: about 0.3 ms each,
four times per signup (bench/RESULTS.md). `Upsert` builds each one once
per dialect and runs it as a lambda statement, which SQLAlchemy caches under
the lambda's code and `track_on` instead: compiled once.

Each function runs on the session (which flushes pending ORM changes first)
unless given `conn`: a caller on a hot path that flushed already passes
`db.session.connection()` and skips the session's per-statement work.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import lru_cache

from sqlalchemy import (
    Connection,
    Executable,
    StatementLambdaElement,
    bindparam,
    lambda_stmt,
)
from sqlalchemy import insert as plain_insert
from sqlalchemy.dialects import postgresql, sqlite

from extensions import db

_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}

InsertFn = Callable  # sqlite.insert or postgresql.insert


def dialect_insert(dialect_name: str) -> InsertFn:
    """The insert() whose statements have .on_conflict_do_nothing() and
    .on_conflict_do_update(): the one way this code base writes an upsert."""
    return _INSERTS[dialect_name]


_serials = itertools.count()


class Upsert:
    """A statement made by `build(insert)` once per dialect, `insert` being
    that dialect's insert(); its values are bindparams given at execution.

    Its cache key is a number of its own, never reused in the process: two
    Upserts never share compiled SQL, whatever they build.
    """

    def __init__(self, build: Callable[[InsertFn], Executable]) -> None:
        self.build = build
        self.serial = next(_serials)
        self._by_dialect: dict[str, StatementLambdaElement] = {}

    def on(self, dialect_name: str) -> StatementLambdaElement:
        found = self._by_dialect.get(dialect_name)
        if found is None:
            stmt = self.build(dialect_insert(dialect_name))
            # The lambda returns the statement built here; only track_on
            # tells one Upsert (and dialect) from another.
            found = lambda_stmt(lambda: stmt, track_on=[dialect_name, self.serial])
            self._by_dialect[dialect_name] = found
        return found

    def execute(self, params: dict, conn: Connection | None = None, **options):
        """Run on `conn`, or on the session; the CursorResult."""
        if conn is None:
            stmt = self.on(db.session.get_bind().dialect.name)
            return db.session.execute(stmt, params, execution_options=options)
        return conn.execute(self.on(conn.dialect.name), params, execution_options=options)


def _values(table, columns: tuple[str, ...], rows: int) -> list[dict] | dict:
    """One bindparam per column (and row), typed as the table's column."""
    if rows == 1:
        return {c: bindparam(c, type_=table.c[c].type) for c in columns}
    return [{c: bindparam(f"{c}_{i}", type_=table.c[c].type) for c in columns} for i in range(rows)]


@lru_cache(maxsize=256)
def _statement(
    model,
    columns: tuple[str, ...],
    conflict: tuple[str, ...],
    add: tuple[str, ...] = (),
    rows: int = 1,
) -> Upsert:
    table = model.__table__

    def build(insert: InsertFn):
        # inline(): no implicit RETURNING of the new key on PostgreSQL.
        stmt = insert(table).values(_values(table, columns, rows)).inline()
        if not add:
            return stmt.on_conflict_do_nothing(index_elements=list(conflict))
        return stmt.on_conflict_do_update(
            index_elements=list(conflict),
            set_={c: table.c[c] + stmt.excluded[c] for c in add},
        )

    return Upsert(build)


@lru_cache(maxsize=64)
def _plain(model):
    # Cacheable as it is: SQLAlchemy compiles it once per set of columns given.
    return plain_insert(model.__table__).inline()


# SQLAlchemy otherwise reports -1 for an INSERT's rowcount on psycopg.
_ROWCOUNT = {"preserve_rowcount": True}


def insert(model, values: dict, conn: Connection | None = None) -> None:
    """A plain INSERT of one row."""
    if conn is None:
        db.session.execute(_plain(model), values)
    else:
        conn.execute(_plain(model), values)


def insert_ignore(
    model, values: dict, conflict: tuple[str, ...], conn: Connection | None = None
) -> bool:
    """Insert a row unless one with the same conflict key exists; True when
    this call inserted it."""
    stmt = _statement(model, tuple(values), tuple(conflict))
    return stmt.execute(values, conn, **_ROWCOUNT).rowcount == 1


def insert_ignore_many(
    model, rows: list[dict], conflict: tuple[str, ...], conn: Connection | None = None
) -> None:
    """Several rows (with the same columns) in one statement; each row whose
    conflict key exists already is left out. A NULL key never conflicts."""
    if not rows:
        return
    columns = tuple(rows[0])
    stmt = _statement(model, columns, tuple(conflict), rows=len(rows))
    if len(rows) == 1:
        params = rows[0]
    else:
        params = {f"{c}_{i}": row[c] for i, row in enumerate(rows) for c in columns}
    stmt.execute(params, conn)


def insert_ignore_each(
    model, rows: list[dict], conflict: tuple[str, ...], conn: Connection | None = None
) -> None:
    """Thousands of rows (with the same columns), each inserted unless its
    conflict key exists: the one-row statement run as an executemany, so the
    driver loops over the rows and nothing large is compiled."""
    if rows:
        _statement(model, tuple(rows[0]), tuple(conflict)).execute(rows, conn)


def insert_or_add(
    model, key: dict, counters: dict[str, int], conn: Connection | None = None
) -> None:
    """Insert the row, or add the counters to the row with the same key."""
    values = {**key, **counters}
    _statement(model, tuple(values), tuple(key), tuple(counters)).execute(values, conn)
