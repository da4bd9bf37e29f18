"""What a developer could write instead: the baselines of `make bench`.

Each is as small as it can be and still do the job; they share the app's
database schema (made by its migrations) and, on SQLite, its connection
settings (WAL, synchronous=NORMAL, busy timeout), so a ratio measures the
application code, not a different database set-up.
"""


def sqlite_settings(app, db) -> None:
    """The app's SQLite connection settings, for a baseline using Flask-SQLAlchemy."""
    from sqlalchemy import event

    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    with app.app_context():

        @event.listens_for(db.engine, "connect")
        def _pragmas(conn, _record) -> None:
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
                conn.execute(f"PRAGMA {pragma}")
