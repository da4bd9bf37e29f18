"""INSERT ... ON CONFLICT, written once for SQLite and PostgreSQL (the syntax
is the same in both) as cacheable text statements.

SQLAlchemy's dialect-specific insert().on_conflict_...() constructs carry no
cache key, so they are compiled again on every call: on the signup path that
was a fifth of the request. These are compiled once per shape.

Each function runs on the session (which flushes pending ORM changes first)
unless given `conn`: a caller on a hot path that flushed already passes
`db.session.connection()` and skips the session's per-statement work.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.sql.elements import TextClause

from extensions import db


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _row_params(table, columns: tuple[str, ...], rows: int) -> tuple[str, list]:
    """VALUES (...), (...) with one named parameter per column and row, and
    their bind parameters typed as the table's columns."""
    groups, params = [], []
    for i in range(rows):
        names = [c if rows == 1 else f"{c}_{i}" for c in columns]
        groups.append("(" + ", ".join(f":{n}" for n in names) + ")")
        params.extend(
            bindparam(n, type_=table.c[c].type) for n, c in zip(names, columns, strict=True)
        )
    return ", ".join(groups), params


class Prepared:
    """A text statement compiled once per dialect and run on the DBAPI cursor
    of the caller's connection, its parameters converted by their types' own
    bind processors, in the caller's transaction.

    Connection.execute costs about 35 µs a statement in SQLAlchemy (a cache
    key, parameter processing, result set-up; for rows, their metadata, made
    anew for text run through the driver): on the signup path, with five
    statements, that was more than SQLite's own work. Only for statements
    whose shape never changes. Errors are the driver's own, not wrapped by
    SQLAlchemy; the session's rollback still ends the transaction.
    """

    def __init__(self, stmt: TextClause, result_types: dict | None = None) -> None:
        self.stmt = stmt
        self.result_types = result_types or {}
        self._compiled: dict = {}

    def _for(self, dialect) -> tuple:
        key = (dialect.name, dialect.paramstyle)
        found = self._compiled.get(key)
        if found is None:
            compiled = self.stmt.compile(dialect=dialect)
            processors = {}
            for bind in compiled.binds.values():
                proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if proc is not None:
                    processors[bind.key] = proc
            results = {}
            for name, type_ in self.result_types.items():
                proc = type_.dialect_impl(dialect).result_processor(dialect, None)
                if proc is not None:
                    results[name] = proc
            order = tuple(compiled.positiontup) if compiled.positional else None
            found = self._compiled[key] = (compiled.string, order, processors, results)
        return found

    def _cursor(self, conn: Connection, params: dict):
        sql, order, processors, _ = self._for(conn.dialect)
        if processors:
            params = {k: (processors[k](v) if k in processors else v) for k, v in params.items()}
        cursor = conn.connection.cursor()
        cursor.execute(sql, tuple(params[name] for name in order) if order else params)
        return cursor

    def execute(self, conn: Connection, params: dict) -> int:
        """Run it; the number of rows it wrote."""
        cursor = self._cursor(conn, params)
        try:
            return cursor.rowcount
        finally:
            cursor.close()

    def rows(self, conn: Connection, params: dict) -> list[dict]:
        """Run it; the rows it returns, as dicts of converted values."""
        results = self._for(conn.dialect)[3]
        cursor = self._cursor(conn, params)
        try:
            names = [d[0] for d in cursor.description]
            out = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            cursor.close()
        for row in out:
            for name, proc in results.items():
                row[name] = proc(row[name])
        return out


@lru_cache(maxsize=256)
def _statement(
    model,
    columns: tuple[str, ...],
    conflict: tuple[str, ...] | None,
    add: tuple[str, ...] = (),
    rows: int = 1,
) -> Prepared:
    table = model.__table__
    cols = ", ".join(_q(c) for c in columns)
    values, params = _row_params(table, columns, rows)
    # Identifiers come from the model's own table, values only as parameters.
    sql = f"INSERT INTO {_q(table.name)} ({cols}) VALUES {values}"  # noqa: S608
    if conflict is not None:
        target = ", ".join(_q(c) for c in conflict)
        if add:
            action = "DO UPDATE SET " + ", ".join(
                f"{_q(c)} = {_q(table.name)}.{_q(c)} + excluded.{_q(c)}" for c in add
            )
        else:
            action = "DO NOTHING"
        sql += f" ON CONFLICT ({target}) {action}"
    return Prepared(text(sql).bindparams(*params))


def _run(prepared: Prepared, params: dict, conn: Connection | None) -> int:
    """Run on the session, or on `conn` (see Prepared); the rows written."""
    if conn is None:
        stmt = prepared.stmt
        return db.session.execute(stmt, params, execution_options=_ROWCOUNT).rowcount
    return prepared.execute(conn, params)


_ROWCOUNT = {"preserve_rowcount": True}


def _flatten(rows: list[dict], columns: tuple[str, ...]) -> dict:
    if len(rows) == 1:
        return rows[0]
    return {f"{c}_{i}": row[c] for i, row in enumerate(rows) for c in columns}


def insert(model, values: dict, conn: Connection | None = None) -> None:
    """A plain INSERT of one row."""
    _run(_statement(model, tuple(values), None), values, conn)


def insert_ignore(
    model, values: dict, conflict: tuple[str, ...], conn: Connection | None = None
) -> bool:
    """Insert a row unless one with the same conflict key exists; True when
    this call inserted it."""
    stmt = _statement(model, tuple(values), tuple(conflict))
    return _run(stmt, values, conn) == 1


def insert_ignore_many(
    model, rows: list[dict], conflict: tuple[str, ...], conn: Connection | None = None
) -> None:
    """Several rows (with the same columns) in one statement; each row whose
    conflict key exists already is left out. A NULL key never conflicts."""
    if not rows:
        return
    columns = tuple(rows[0])
    stmt = _statement(model, columns, tuple(conflict), rows=len(rows))
    _run(stmt, _flatten(rows, columns), conn)


def insert_or_add(
    model, key: dict, counters: dict[str, int], conn: Connection | None = None
) -> None:
    """Insert the row, or add the counters to the row with the same key."""
    values = {**key, **counters}
    stmt = _statement(model, tuple(values), tuple(key), tuple(counters))
    _run(stmt, values, conn)
