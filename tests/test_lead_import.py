"""CSV import of leads through `flask leads import`: real files with bad
rows (tests/fixtures/imports), exact line numbers, encodings, formulas,
suppressed/unsubscribed/erased addresses never imported, consent evidence,
the dry run writing nothing, and --confirm mailing through a real SMTP
server. On SQLite and PostgreSQL (the app fixture)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from extensions import db
from models import (
    ConsentEvent,
    Lead,
    LeadImport,
    LeadImportIssue,
    LeadStatus,
    MailKind,
    OutboxMessage,
    SignupStatsDaily,
)
from services.imports import checking, jobs
from services.leads import privacy, suppressions
from services.reporting import export
from services.reporting.lead_query import LeadFilters
from tests.factories import make_lead
from tests.helpers import base_config, count, drain, received, smtp_settings, the_lead

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
MIXED = FIXTURES / "leads_utf8_bom.csv"
BASIS = "Ticked 'send me the newsletter' on the 2025 Agile Days registration form"

# leads_utf8_bom.csv line by line (the header is line 1; line 3's note spans lines 3-4).
REFUSED = {
    5: "invalid address 'not-an-address'",
    6: "duplicate of line 2",
    7: "unsubscribed: an import never subscribes them again",
    8: "erased at the person's request: never imported again",
    9: "suppressed (hard_bounce): never imported again",
    12: "6 columns where the header has 5",
    15: "name is longer than 100 characters",
    17: "first name contains a control character",
}
WARNED = {10: "name starts like a spreadsheet formula", 11: "unknown topic 'webinars'"}
SUMMARY = "new=5 updated=1 unchanged=1 refused=8 warnings=3"


@pytest.fixture
def app_config(tmp_path, db_url, smtp_server) -> dict:
    return {
        **base_config(tmp_path),
        "SQLALCHEMY_DATABASE_URI": db_url,
        **smtp_settings(smtp_server),
    }


@pytest.fixture
def on_the_list(app):
    """What the file meets: a lead to update, one with nothing new, one who
    unsubscribed, one erased (only its hash is left) and a hard bounce."""
    with app.app_context():
        make_lead("existing@example.com", ["cspo-classes"])
        make_lead("same@example.com", ["cspo-classes"])
        make_lead("gone@example.com", ["newsletter"], status=LeadStatus.UNSUBSCRIBED)
        privacy.erase(make_lead("erased@example.com"))
        suppressions.suppress("bounced@example.com", "hard_bounce", "550 5.1.1 unknown user")
        db.session.commit()


def import_file(runner, path: Path, *extra: str):
    result = runner.invoke(
        args=["leads", "import", str(path), "--topic", "cspo-classes", "--consent", BASIS, *extra]
    )
    return result


def issue_lines(output: str) -> dict[int, tuple[str, str]]:
    found = {}
    for line in output.splitlines():
        if line.startswith("line "):
            number, kind, reason = line[5:].split(": ", 2)
            found[int(number)] = (kind, reason)
    return found


def test_import_reports_each_bad_line_by_its_number_and_imports_the_rest(
    app, runner, frozen, on_the_list
):
    result = import_file(runner, MIXED, "--source", "agile-days-2025")
    assert result.exit_code == 0, result.output
    issues = issue_lines(result.output)
    assert {n for n, (kind, _) in issues.items() if kind == "refused"} == set(REFUSED)
    for number, reason in REFUSED.items():
        assert issues[number][1].startswith(reason), (number, issues[number])
    assert {n for n, (kind, _) in issues.items() if kind == "warning"} == {10, 11, 16}
    for number, reason in WARNED.items():
        assert issues[number][1].startswith(reason)
    assert SUMMARY in result.output

    # The multi-line quoted note did not shift a line; the address was cleaned.
    ben = the_lead(app, "ben@example.com")
    assert (ben.name, ben.status, ben.source_placement) == ("Ben", LeadStatus.CONFIRMED, "import")
    assert the_lead(app, "ann@example.com").topic_slugs == {"cspo-classes", "newsletter"}
    assert the_lead(app, "chloe@example.com").name == "Chloé Dupont"
    assert the_lead(app, "existing@example.com").topic_slugs == {"cspo-classes", "newsletter"}
    # Never subscribed again, never brought back, never overwritten.
    assert the_lead(app, "gone@example.com").status == LeadStatus.UNSUBSCRIBED
    assert the_lead(app, "gone@example.com").topic_slugs == {"newsletter"}
    assert count(app, Lead, Lead.email.in_(["erased@example.com", "bounced@example.com"])) == 0
    assert count(app, Lead, Lead.email == "not-an-address") == 0

    with app.app_context():
        job = db.session.execute(select(LeadImport)).scalar_one()
        assert (job.status.value, job.rows_done, job.filename) == ("done", 15, MIXED.name)
        assert (job.new, job.updated, job.unchanged, job.refused, job.warnings) == (5, 1, 1, 8, 3)
        stored = db.session.execute(
            select(LeadImportIssue.line).where(LeadImportIssue.refused.is_(True))
        ).scalars()
        assert set(stored) == set(REFUSED)
        # Consent evidence: the stated basis, the file, who and when.
        ann = db.session.execute(
            select(ConsentEvent).join(Lead).where(Lead.email == "ann@example.com")
        ).scalar_one()
        assert (ann.channel, ann.placement, ann.import_id) == ("import", "import", job.id)
        assert ann.consent_text.text == BASIS
        assert (job.actor, job.created_at, ann.at) == ("cli", frozen.now, frozen.now)
        # The lead that gained a topic keeps its first record and gets one more.
        existing = db.session.execute(
            select(ConsentEvent.channel, ConsentEvent.topics)
            .join(Lead)
            .where(Lead.email == "existing@example.com")
        ).all()
        assert [tuple(e) for e in existing] == [("import", "newsletter")]
        # The dashboard's rollup counts the new leads under the source.
        signups = db.session.scalar(
            select(func.sum(SignupStatsDaily.signups)).where(
                SignupStatsDaily.source_slug == "agile-days-2025"
            )
        )
        assert signups == 5
        # A formula stays text in the database and is neutralised on export.
        exported = b"".join(export.iter_csv(LeadFilters())).decode()
        assert '\'=HYPERLINK(""http://evil.example""' in exported
        assert ",=HYPERLINK" not in exported
        assert ",'+SUM(1)," in exported
    # Mailed nothing: imported without --confirm, the stated basis is the evidence.
    assert count(app, OutboxMessage) == 0


def test_a_second_import_of_the_same_file_changes_nothing(app, runner, on_the_list):
    assert import_file(runner, MIXED).exit_code == 0
    again = import_file(runner, MIXED)
    assert again.exit_code == 0, again.output
    assert "new=0 updated=0 unchanged=7 refused=8 warnings=3" in again.output
    assert count(app, ConsentEvent) == 6  # 5 new leads, 1 update: none added again


def test_dry_run_counts_the_same_and_writes_nothing(app, runner, on_the_list):
    tables = (Lead, ConsentEvent, LeadImport, LeadImportIssue, OutboxMessage, SignupStatsDaily)
    before = [count(app, t) for t in tables]
    result = import_file(runner, MIXED, "--dry-run", "--confirm")
    assert result.exit_code == 0, result.output
    assert f"would be {SUMMARY}" in result.output
    assert set(issue_lines(result.output)) == set(REFUSED) | {10, 11, 16}
    assert [count(app, t) for t in tables] == before


def test_windows_1252_and_a_utf8_file_with_one_bad_line(app, runner):
    result = import_file(runner, FIXTURES / "leads_cp1252.csv")
    assert result.exit_code == 0, result.output
    assert "cp1252" in result.output
    assert the_lead(app, "zoe@example.com").name == "Zoë “Quotes” Ünal"
    assert the_lead(app, "jose@example.com").source_slug == "crm"  # the Source column

    result = import_file(runner, FIXTURES / "leads_broken_utf8.csv")
    assert result.exit_code == 0, result.output
    assert issue_lines(result.output) == {
        3: ("refused", "not UTF-8 or Windows-1252 text (wrong encoding)")
    }
    assert the_lead(app, "anna@example.com").name == "Anna Łukasz"
    assert count(app, Lead, Lead.email == "bad@example.com") == 0


def test_confirm_keeps_new_leads_pending_and_sends_the_signup_confirmation(
    app, runner, smtp_server, on_the_list
):
    result = import_file(runner, MIXED, "--confirm")
    assert result.exit_code == 0, result.output
    assert the_lead(app, "ann@example.com").status == LeadStatus.PENDING
    # An existing lead is not asked again: its status and record stand.
    assert the_lead(app, "existing@example.com").status == LeadStatus.CONFIRMED
    assert count(app, OutboxMessage, OutboxMessage.kind == MailKind.CONFIRMATION) == 5
    drain(app)
    mail = received(smtp_server)
    assert set(mail) == {
        "ann@example.com",
        "ben@example.com",
        "mallory@example.com",
        "chloe@example.com",
        "plus@example.com",
    }
    body = mail["ann@example.com"][0].get_body(("plain",)).get_content()
    assert "/confirm/" in body


def test_bad_options_and_files_get_one_line(app, runner, tmp_path):
    result = import_file(runner, MIXED, "--topic", "no-such-topic")
    assert result.exit_code != 0 and "Topics are one or more of" in result.output
    headless = tmp_path / "no-email.csv"
    headless.write_text("name,company\nAnn,ACME\n")
    result = import_file(runner, headless)
    assert result.exit_code != 0 and "No column is mapped to the email address" in result.output
    result = import_file(runner, MIXED, "--resume")
    assert result.exit_code != 0 and "No unfinished import" in result.output
    assert count(app, Lead) == 0


def test_an_oversized_field_and_an_unclosed_quote_are_refused_by_line(app, runner, tmp_path):
    path = tmp_path / "damaged.csv"
    path.write_text(
        "email,name\n"
        f"huge@example.com,{'x' * 20_000}\n"
        "fine@example.com,Fine\n"
        '"open@example.com","never closed\n'
        "swallowed@example.com,Gone\n"
    )
    result = import_file(runner, path)
    assert result.exit_code == 0, result.output
    assert issue_lines(result.output) == {
        2: ("refused", "cannot be read as CSV: field larger than field limit (10000)"),
        4: ("refused", "cannot be read as CSV: unexpected end of data"),
    }
    assert "new=1 " in result.output
    assert the_lead(app, "fine@example.com").name == "Fine"


# A file of three batches of three rows: the first checked here, the rest
# in the checking process (services.imports.checking), which normalises and
# refuses addresses and warns of formulas the same way.
SEVERAL_BATCHES = [
    "ann@example.com",
    "ben@example.com",
    "cat@example.com",
    " DAN@Example.COM ",
    "not-an-address",
    "eve@example..com",
    "=fay@example.com",
    "gus@",
    "hal@example.com",
]


@pytest.fixture
def several_batches(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(jobs, "BATCH_ROWS", 3)
    path = tmp_path / "several.csv"
    path.write_text("Email\r\n" + "".join(f"{a}\r\n" for a in SEVERAL_BATCHES))
    return path


@pytest.fixture
def checkers(monkeypatch) -> list[subprocess.Popen]:
    """The checking processes started, as they were started (real ones)."""
    started, real_popen = [], subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(checking.subprocess, "Popen", popen)
    return started


def test_a_file_of_several_batches_has_its_addresses_checked_in_a_process_of_its_own(
    app, runner, several_batches, checkers
):
    result = import_file(runner, several_batches)
    assert result.exit_code == 0, result.output
    issues = issue_lines(result.output)
    assert {n: reason.split(":")[0] for n, (kind, reason) in issues.items()} == {
        6: "invalid address 'not-an-address'",
        7: "invalid address 'eve@example..com'",
        8: "email starts like a spreadsheet formula",
        9: "invalid address 'gus@'",
    }
    assert "new=6 updated=0 unchanged=0 refused=3 warnings=1" in result.output
    assert the_lead(app, "dan@example.com").status == LeadStatus.CONFIRMED
    assert the_lead(app, "=fay@example.com") is not None
    # One process for the batches after the first, ended with the import.
    assert len(checkers) == 1
    assert checkers[0].args[1:3] == ["-m", "services.imports.checking"]
    assert checkers[0].poll() == 0


def test_an_import_whose_checking_process_dies_stops_after_whole_batches_and_resumes(
    app, runner, several_batches, monkeypatch
):
    real_popen = subprocess.Popen

    def dying(args, **kwargs):  # a checker killed before it answers
        return real_popen([sys.executable, "-c", "pass"], **kwargs)

    monkeypatch.setattr(checking.subprocess, "Popen", dying)
    stopped = import_file(runner, several_batches)
    assert stopped.exit_code != 0
    assert "the address-checking process stopped" in stopped.output
    assert "--resume" in stopped.output
    with app.app_context():
        job = db.session.execute(select(LeadImport)).scalar_one()
        assert (job.status.value, job.rows_done, job.new) == ("failed", 3, 3)
    assert count(app, Lead) == 3

    monkeypatch.setattr(checking.subprocess, "Popen", real_popen)
    resumed = import_file(runner, several_batches, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "new=6 updated=0 unchanged=0 refused=3 warnings=1" in resumed.output
    assert count(app, Lead) == 6
