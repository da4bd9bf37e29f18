"""The import page: upload (stored in the database), the guessed mapping
shown for confirmation, the dry run and the import run by the worker
(`flask worker --once` in-process), the report with exact line numbers,
progress as JSON, the audit trail; the upload is the one staff post that
takes a file, a CSV within IMPORT_MAX_BYTES. On SQLite and PostgreSQL."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from extensions import db
from models import ConsentEvent, ImportStatus, Lead, LeadImport, LeadImportChunk, Role
from services.imports import files, jobs
from tests import procs
from tests.helpers import (
    audit_actions,
    base_config,
    count,
    csrf_token,
    drain,
    page_text,
    sign_in_as,
    the_lead,
)

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
BASIS = "Visitors of our stand at Agile Days 2025 who asked for the newsletter"


@pytest.fixture
def app_config(tmp_path, db_url) -> dict:
    # Small enough for the test of the limit, large enough for two batches.
    return {**base_config(tmp_path), "SQLALCHEMY_DATABASE_URI": db_url, "IMPORT_MAX_BYTES": 300_000}


@pytest.fixture
def marketer(app, client):
    return sign_in_as(app, client, Role.MARKETER)


def upload(client, path: Path, name: str | None = None, **fields):
    token = csrf_token(client, "/marketing/import/")
    data = {
        "csrf_token": token,
        "topics": ["newsletter"],
        "source": "agile-days",
        "consent": BASIS,
        "file": (io.BytesIO(path.read_bytes()), name or path.name),
        **fields,
    }
    return client.post("/marketing/import/", data=data, content_type="multipart/form-data")


def visible(response) -> str:
    """The page's text as read: tags dropped, white space folded."""
    return " ".join(re.sub(r"<[^>]+>", " ", page_text(response)).split())


def the_job(app) -> LeadImport:
    with app.app_context():
        job = db.session.execute(select(LeadImport)).scalar_one()
        db.session.expunge(job)
        return job


def test_upload_map_check_then_import(app, client, marketer):
    r = upload(client, FIXTURES / "leads_utf8_bom.csv")
    assert r.status_code == 303, page_text(r)
    page_url = r.headers["Location"]
    job = the_job(app)
    assert (job.status, job.encoding, job.stored) == (ImportStatus.UPLOADED, "utf-8-sig", True)
    assert count(app, LeadImportChunk) == 1

    # The guessed mapping is shown for confirmation, with the first rows.
    html = client.get(page_url).get_data(as_text=True)
    selects = {
        m.group(1): m.group(0)
        for m in re.finditer(r'<select id="column-(\d)".*?</select>', html, re.S)
    }
    assert '<option value="email" selected>' in selects["0"]
    assert '<option value="last_name" selected>' in selects["2"]
    assert "selected" not in selects["4"]  # Notes: not imported
    assert "ann@example.com" in html and "Smith" in html
    token = csrf_token(client, page_url)

    # Confirm it: the dry run is queued for the worker, and nothing is imported.
    mapping = {"column-0": "email", "column-1": "first_name", "column-2": "last_name"}
    r = client.post(f"{page_url}/check", data={"csrf_token": token, **mapping})
    assert r.status_code == 303
    assert the_job(app).status == ImportStatus.CHECKING
    assert "Refresh" in page_text(client.get(page_url))  # works without the script
    drain(app)
    job = the_job(app)
    assert job.status == ImportStatus.CHECKED
    assert {k: job.dry_run[k] for k in ("new", "refused", "warnings")} == {
        "new": 10,
        "refused": 5,
        "warnings": 2,  # the Topics column is not imported now: no unknown topic
    }
    assert count(app, Lead) == 0
    text = visible(client.get(page_url))
    assert "Import 10 leads" in text
    for line in ("5", "6", "12", "15", "17"):
        assert re.search(rf"\b{line} refused", text), line

    r = client.post(f"{page_url}/start", data={"csrf_token": token})
    assert r.status_code == 303
    assert client.get(f"{page_url}/progress.json").get_json()["status"] == "queued"
    drain(app)
    progress = client.get(f"{page_url}/progress.json").get_json()
    assert (progress["status"], progress["new"], progress["refused"]) == ("done", 10, 5)
    assert progress["rows_done"] == 15 and progress["finished"]
    assert the_lead(app, "ann@example.com").topic_slugs == {"newsletter"}
    assert the_lead(app, "ann@example.com").source_slug == "agile-days"
    assert count(app, LeadImportChunk) == 0  # the stored file goes once it is imported
    with app.app_context():
        event = db.session.execute(select(ConsentEvent)).scalars().first()
        assert event.consent_text.text == BASIS
    job = the_job(app)
    assert job.actor == "marketer@example.com"
    assert audit_actions(app, job.public_id) == [
        "leads.import_uploaded",
        "leads.import_checked",
        "leads.import",
    ]
    text = visible(client.get(page_url))
    assert re.search(r"\b6 refused duplicate of line 2", text)

    # The dashboard counts them under their own placement.
    dashboard = client.get("/marketing/")
    assert dashboard.status_code == 200 and "import" in visible(dashboard)

    # The lead's timeline names the import and the stated basis; so does its data.
    ann = the_lead(app, "ann@example.com").public_id
    text = visible(client.get(f"/marketing/leads/{ann}"))
    assert f"Imported from {job.filename} by marketer@example.com" in text
    assert BASIS in text
    given = client.get(f"/marketing/leads/{ann}/data.json").get_json()["consent_events"][0]
    assert (given["channel"], given["imported_from"]) == ("import", job.filename)


def test_cancel_drops_the_stored_file(app, client, marketer):
    page_url = upload(client, FIXTURES / "leads_cp1252.csv").headers["Location"]
    token = csrf_token(client, page_url)
    assert client.post(f"{page_url}/cancel", data={"csrf_token": token}).status_code == 303
    assert the_job(app).status == ImportStatus.CANCELLED
    assert count(app, LeadImportChunk) == 0
    assert client.post(f"{page_url}/start", data={"csrf_token": token}).status_code == 303
    assert the_job(app).status == ImportStatus.CANCELLED


def test_only_a_csv_within_the_limit_and_only_on_the_import_page(app, client, marketer, tmp_path):
    assert upload(client, FIXTURES / "leads_cp1252.csv", name="leads.txt").status_code == 400
    big = tmp_path / "big.csv"
    big.write_text("email\n" + "someone@example.com\n" * 16_000)  # over IMPORT_MAX_BYTES
    assert upload(client, big).status_code == 413
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    r = upload(client, empty)
    assert r.status_code == 400 and "The file is empty" in page_text(r)
    assert count(app, LeadImport) == 0
    # Every other staff post still refuses a file.
    token = csrf_token(client, "/marketing/import/")
    r = client.post(
        "/marketing/embed",
        data={"csrf_token": token, "file": (io.BytesIO(b"email\n"), "a.csv")},
        content_type="multipart/form-data",
    )
    assert r.status_code in (400, 405)


def test_a_visitor_cannot_upload(app, client):
    r = client.post(
        "/marketing/import/",
        data={"file": (io.BytesIO(b"email\nx@example.com\n"), "a.csv")},
        content_type="multipart/form-data",
    )
    assert r.status_code in (302, 400, 403)
    assert count(app, LeadImport) == 0


def _queued_big_import(app, client, tmp_path, rows: int) -> str:
    big = tmp_path / "crm.csv"
    big.write_text("email,name\n" + "".join(f"p{i}@example.com,P{i}\n" for i in range(rows)))
    page_url = upload(client, big).headers["Location"]
    token = csrf_token(client, page_url)
    client.post(f"{page_url}/check", data={"csrf_token": token, "column-0": "email"})
    drain(app)
    client.post(f"{page_url}/start", data={"csrf_token": token})
    return page_url


def test_a_worker_that_dies_mid_import_leaves_whole_batches_for_the_next(
    app, client, marketer, tmp_path, frozen
):
    rows = 2 * jobs.BATCH_ROWS + 7
    page_url = _queued_big_import(app, client, tmp_path, rows)

    def crash(_records):  # dies right after its first batch committed
        raise SystemExit("killed")

    with app.app_context():
        job = db.session.execute(select(LeadImport)).scalar_one()
        assert jobs.take(job.id, "host-a:1", (ImportStatus.QUEUED,), ImportStatus.RUNNING)
        with pytest.raises(SystemExit), files.open_stored(job) as binary:
            jobs.run(job, binary, "host-a:1", on_progress=crash)
        db.session.rollback()
    # Its address-checking process, busy with the next batch, went with it.
    checking = [p for p in procs.child_pids(os.getpid()) if "imports.checking" in procs.cmdline(p)]
    assert checking == []
    assert count(app, Lead) == jobs.BATCH_ROWS
    # Its lease still holds: no other worker takes the job yet.
    drain(app)
    assert the_job(app).rows_done == jobs.BATCH_ROWS
    frozen.advance(jobs.LEASE.total_seconds() + 1)
    drain(app)
    progress = client.get(f"{page_url}/progress.json").get_json()
    assert (progress["status"], progress["rows_done"], progress["new"]) == ("done", rows, rows)
    assert count(app, Lead) == rows
    assert count(app, ConsentEvent) == rows
