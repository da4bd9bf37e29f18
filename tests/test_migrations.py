"""`flask db upgrade` on an empty database builds exactly what the models say."""

from __future__ import annotations

import logging

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from app import create_app
from extensions import db
from tests.helpers import signup

# SQLite cannot reflect an index on an expression (lower(name)): SQLAlchemy
# says so and skips it; PostgreSQL compares it in full.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Skipped unsupported reflection of expression-based index"
)


@pytest.fixture(autouse=True)
def keep_logging():
    """migrations/env.py calls logging.config.fileConfig, which disables every
    logger that exists; put them back so later tests still see their logs."""
    manager = logging.Logger.manager
    root = logging.getLogger()
    saved = {
        name: (lg.disabled, lg.level, list(lg.handlers), lg.propagate)
        for name, lg in manager.loggerDict.items()
        if isinstance(lg, logging.Logger)
    }
    saved_root = (root.level, list(root.handlers))
    yield
    for name, (disabled, level, handlers, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.disabled, lg.level, lg.handlers, lg.propagate = disabled, level, handlers, propagate
    root.level, root.handlers = saved_root[0], saved_root[1]


@pytest.fixture
def migrated_app(empty_db_url, tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            # Where the test client's pages come from: the signup's Origin check.
            "SITE_URL": "http://localhost",
            "SQLALCHEMY_DATABASE_URI": empty_db_url,
            "MAIL_FILE_DIR": str(tmp_path / "mail"),
        }
    )
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def schema_diffs(app) -> list:
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def table_names(app) -> set[str]:
    with app.app_context():
        return set(inspect(db.engine).get_table_names())


def test_upgrade_builds_the_schema_of_the_models(migrated_app):
    app = migrated_app
    runner = app.test_cli_runner()
    assert table_names(app) == set()

    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert table_names(app) == {*db.metadata.tables, "alembic_version"}
    assert schema_diffs(app) == []

    # What `flask db check` says in CI, through the project's own env.py.
    result = runner.invoke(args=["db", "check"])
    assert result.exit_code == 0, result.output

    # One head, the database is at it, and upgrading again is a no-op.
    with app.app_context():
        script = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())
        (head,) = script.get_heads()
        version = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        assert version == head
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0


def test_downgrade_to_base_and_back(migrated_app):
    runner = migrated_app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    result = runner.invoke(args=["db", "downgrade", "base"])
    assert result.exit_code == 0, result.output
    assert table_names(migrated_app) <= {"alembic_version"}
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    assert schema_diffs(migrated_app) == []


def test_the_migrated_schema_takes_a_signup(migrated_app):
    app = migrated_app
    assert app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    client = app.test_client()
    app.config["FORM_MIN_SECONDS"] = 0
    assert signup(client, "ann@example.com").status_code == 303
    with app.app_context():
        assert db.session.execute(text("SELECT email FROM lead")).scalar_one() == "ann@example.com"


def _insert_announcement(status: str) -> None:
    db.session.execute(
        text(
            "INSERT INTO announcement (public_id, subject, body, topic, ignore_frequency_cap,"
            " status, send_timezone, created_at)"
            " VALUES (:p, 's', 'b', 'newsletter', false, :status, 'UTC', CURRENT_TIMESTAMP)"
        ),
        {"p": f"p-{status}", "status": status},
    )


def test_an_announcement_can_be_failed_with_its_reason_after_upgrade(migrated_app):
    """The CHECK constraint of the status (issue 14) changes with the enum."""
    app = migrated_app
    runner = app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    with app.app_context():
        _insert_announcement("failed")
        db.session.execute(text("UPDATE announcement SET failure = 'why'"))
        db.session.commit()
        with pytest.raises(IntegrityError):
            _insert_announcement("exploded")
        db.session.rollback()
        db.session.execute(text("DELETE FROM announcement"))
        db.session.commit()
    # Downgrading keeps the row (as cancelled) and the old constraint.
    with app.app_context():
        _insert_announcement("failed")
        db.session.commit()
        db.session.remove()
    assert runner.invoke(args=["db", "downgrade", "f4538e6eb80d"]).exit_code == 0
    with app.app_context():
        status = db.session.execute(text("SELECT status FROM announcement")).scalar_one()
        assert status == "cancelled"
        with pytest.raises(IntegrityError):
            _insert_announcement("failed")
        db.session.rollback()
