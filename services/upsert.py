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
`insert_rows`, for bulk loads, always takes the connection.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import lru_cache

from sqlalchemy import (
    Connection,
    Dialect,
    Executable,
    StatementLambdaElement,
    Table,
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


def insert_rows(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: list[tuple],
    *,
    constants: dict | None = None,
    conflict: tuple[str, ...] = (),
) -> None:
    """Thousands of rows for a bulk load, as tuples of `columns`, through the
    driver's executemany; `constants` (a batch's time, a status) are the same
    on every row. With `conflict`, a row whose key exists is left out.

    Each column's type converts its values as SQLAlchemy would, but only
    where it has something to do: once per call for a constant, per row for
    the rest (plain strings and numbers need nothing). SQLAlchemy's own
    executemany converts every value of every row, the import's largest
    cost after address checking (bench/RESULTS.md, finding 11)."""
    if not rows:
        return
    constants = constants or {}
    sql, converters = _bulk_insert(conn.dialect, table, columns + tuple(constants), conflict)
    fixed = tuple(
        convert(value) if convert else value
        for convert, value in zip(converters[len(columns) :], constants.values(), strict=True)
    )
    per_row = [(i, convert) for i, convert in enumerate(converters[: len(columns)]) if convert]
    if per_row:
        rows = [_converted(row, per_row) for row in rows]
    conn.exec_driver_sql(sql, [row + fixed for row in rows] if fixed else rows)


def _converted(row: tuple, per_row: list[tuple[int, Callable]]) -> tuple:
    values = list(row)
    for i, convert in per_row:
        values[i] = convert(values[i])
    return tuple(values)


# How the DB-API drivers SQLAlchemy uses here mark a positional parameter.
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


@lru_cache(maxsize=64)
def _bulk_insert(dialect: Dialect, table: Table, columns: tuple[str, ...], conflict: tuple):
    """The INSERT's text for the driver, and each column's converter to the
    driver's value (its type's bind processor on this dialect), or None."""
    skipped = [c.name for c in table.c if c.name not in columns and c.default is not None]
    if skipped:  # the driver knows nothing of the model's Python-side defaults
        raise ValueError(f"insert_rows into {table.name} must be given {', '.join(skipped)}")
    quote = dialect.identifier_preparer.quote
    placeholder = _PLACEHOLDERS[dialect.paramstyle]
    # Names from the table's metadata, quoted by the dialect; values are parameters.
    sql = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "  # noqa: S608
        f"({', '.join(quote(c) for c in columns)}) "
        f"VALUES ({', '.join([placeholder] * len(columns))})"
    )
    if conflict:
        sql += f" ON CONFLICT ({', '.join(quote(c) for c in conflict)}) DO NOTHING"
    converters = tuple(
        table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns
    )
    return sql, converters


def insert_or_add(
    model, key: dict, counters: dict[str, int], conn: Connection | None = None
) -> None:
    """Insert the row, or add the counters to the row with the same key."""
    values = {**key, **counters}
    _statement(model, tuple(values), tuple(key), tuple(counters)).execute(values, conn)
