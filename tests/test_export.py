"""CSV export: exactly the browser's result set, RFC 4180, UTF-8 (and a BOM
for Excel), no formula from lead data, a dated attachment, an audit record,
the CLI writes the same bytes, and 100,000 leads stream in flat memory."""

from __future__ import annotations

import csv
import gc
import io
import tracemalloc
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from sqlalchemy import insert, select

from app import create_app
from devtools.fake_data import generate_leads
from extensions import db
from models import AuditEvent, Lead, LeadStatus, Role
from models.lead import UTM_KEYS
from services import clock
from services.reporting import export
from services.reporting.export import BOM, HEADER, ROWS_PER_CHUNK, neutralise
from services.reporting.lead_query import LeadFilters, count
from tests.factories import BASE, CASES, Seeded, make_leads, store
from tests.helpers import add_user, base_config, sign_in, sign_in_as, signup, walk

DANGEROUS = ["=1+1", "+1", "-1", "@SUM(A1:A2)", "\tx", "\rx", "\nx", '=HYPERLINK("http://x")']
SAFE_VALUES = [
    'Doe, "JJ"\nJr',
    "a\r\nb",
    "  spaces  ",
    "Zoë",
    "李小龙",
    "emoji 😀",
    "O'Brien",
    "tab\tinside",
    "semi;colon",
    "'=already quoted",
    "x" * 100,
]


def one(leads: list[Seeded], i: int, **fields) -> Seeded:
    s = Seeded(
        public_id=f"x{i:04d}",
        email=f"x{i:04d}@example.com",
        name=None,
        status="confirmed",
        source_slug="cspo-certification-benefits",
        source_placement="inline",
        utm_source=None,
        utm_campaign=None,
        created_at=BASE - timedelta(minutes=i),
        topics=["newsletter"],
    )
    for k, v in fields.items():
        setattr(s, k, v)
    leads.append(s)
    return s


@pytest.fixture
def staff(app, client):
    sign_in_as(app, client)
    return client


def get_csv(client, args: dict | None = None):
    """The whole download, read to the end as a browser does."""
    r = client.get("/marketing/leads.csv" + ("?" + urlencode(args) if args else ""))
    body = r.get_data()
    assert r.status_code == 200, body[:500]
    return r


def rows_of(body: bytes) -> list[list[str]]:
    text = body.decode("utf-8")
    if text.startswith(BOM):
        text = text[1:]
    return list(csv.reader(io.StringIO(text, newline="")))


# --- The same leads as the browser.


def test_csv_rows_equal_the_browsers_result_set(staff, app):
    seeded = store(app, make_leads())
    by_id = {s.public_id: s for s in seeded}
    for args, _ in CASES:
        shown, _ = walk(staff, "/marketing/leads?" + urlencode(args))
        rows = rows_of(get_csv(staff, args).data)
        assert rows[0] == HEADER
        assert [r[0] for r in rows[1:]] == shown, args
        for row in rows[1:]:
            s = by_id[row[0]]
            assert row[1] == s.email
            assert row[3] == s.status
    for sort in ("oldest", "email"):
        shown, _ = walk(staff, f"/marketing/leads?sort={sort}&status=confirmed")
        rows = rows_of(get_csv(staff, {"sort": sort, "status": "confirmed"}).data)
        assert [r[0] for r in rows[1:]] == shown


def test_header_and_rfc_4180(staff, app):
    leads: list[Seeded] = []
    one(leads, 1, name='Doe, "JJ"\nJr', topics=["cspo-classes", "newsletter"])
    one(leads, 2, name="Plain")
    store(app, leads)
    r = get_csv(staff)
    assert r.mimetype == "text/csv"
    assert r.mimetype_params.get("charset") == "utf-8"
    body = r.data
    assert not body.startswith(BOM.encode())
    assert body.startswith(",".join(HEADER).encode() + b"\r\n")
    assert b'"Doe, ""JJ""\nJr"' in body
    # Every record ends with CRLF; the only bare LF is the one inside quotes.
    assert body.endswith(b"\r\n")
    assert body.replace(b"\r\n", b"").count(b"\n") == 1
    assert body.count(b"\r\n") == 3
    assert ",cspo-classes;newsletter," in body.decode()
    assert len(rows_of(body)) == 3


def test_utf8_and_the_excel_bom(staff, app):
    leads: list[Seeded] = []
    one(leads, 1, name="Zoë")
    one(leads, 2, name="李小龙")
    store(app, leads)
    plain = get_csv(staff).data
    assert "Zoë".encode() in plain and "李小龙".encode() in plain
    excel = get_csv(staff, {"excel": "1"}).data
    assert excel.startswith(b"\xef\xbb\xbf")
    assert excel[3:] == plain
    assert not plain.startswith(b"\xef\xbb\xbf")


@pytest.mark.parametrize("value", [*DANGEROUS, "\0x"])
def test_neutralise_prefixes_formula_starts(value):
    assert neutralise(value) == "'" + value


@pytest.mark.parametrize("value", ["", "x=1", "a-b", "'=x", " =1", "Zoë", "1+1"])
def test_neutralise_leaves_other_values_alone(value):
    assert neutralise(value) == value


# Columns the app fills itself; every other column holds text a visitor
# typed or sent (or another tool's CSV held), and must come out neutral.
OWN_COLUMNS = {"id", "status", "topics", "signed_up_at", "confirmed_at", "unsubscribed_at"}


def test_every_visitor_controlled_column_is_neutralised(staff, app, db_url):
    visitor_columns = [name for name in HEADER if name not in OWN_COLUMNS]
    assert visitor_columns == [
        "email", "name", "source", "placement", "utm_source", "utm_medium",
        "utm_campaign", "utm_term", "utm_content", "referrer",
    ]  # fmt: skip
    column = {name: col for name, col in export.COLUMNS if col is not None}
    values = list(DANGEROUS)
    if db_url.startswith("sqlite"):
        values.append("\0x")  # PostgreSQL refuses NUL in text columns
    stored = []
    for i, value in enumerate(values):
        # As long as each column holds (source_placement: 20 characters).
        row = {column[name].key: value[: column[name].type.length] for name in visitor_columns}
        row.update(
            public_id=f"f{i:04d}",
            email=f"{value}{i}@example.com",
            status=LeadStatus.CONFIRMED,
            created_at=BASE - timedelta(minutes=i),
        )
        stored.append(row)
    with app.app_context():
        db.session.execute(insert(Lead), stored)
        db.session.commit()
    rows = rows_of(get_csv(staff, {"sort": "oldest"}).data)[1:]
    assert len(rows) == len(values)
    by_id = {r["public_id"]: r for r in stored}
    for row in rows:
        lead = by_id[row[HEADER.index("id")]]
        for name in visitor_columns:
            value = lead[column[name].key]
            assert row[HEADER.index(name)] == "'" + value, (name, value)


def test_a_visitors_formulas_typed_into_the_signup_come_out_neutral(staff, app):
    """The same through the real signup: the form keeps what the visitor
    typed as it is (it is theirs), and the export quotes it."""
    typed = {"name": "-2+3+cmd|' /C calc'!A0"}
    typed.update({k: f'=HYPERLINK("http://x/{k}")' for k in UTM_KEYS})
    assert signup(staff, "=1+1@example.com", **typed).status_code == 303
    header, row = rows_of(get_csv(staff).data)  # the one lead
    cells = dict(zip(header, row, strict=True))
    assert cells["email"] == "'=1+1@example.com"
    for name, value in typed.items():
        assert cells[name] == "'" + value, name


def test_round_trip_gives_back_the_stored_values(staff, app):
    leads: list[Seeded] = []
    for i, v in enumerate(SAFE_VALUES):
        one(leads, i, name=v, utm_source=v[:200], utm_campaign=v[:200])
    store(app, leads)
    rows = rows_of(get_csv(staff, {"sort": "email"}).data)
    assert rows[0] == HEADER
    by_id = {s.public_id: s for s in leads}
    assert len(rows) == len(leads) + 1
    col = {name: HEADER.index(name) for name in HEADER}
    for row in rows[1:]:
        s = by_id[row[col["id"]]]
        assert row[col["email"]] == s.email
        assert row[col["name"]] == s.name
        assert row[col["utm_source"]] == s.utm_source
        assert row[col["utm_campaign"]] == s.utm_campaign
        assert row[col["status"]] == s.status
        assert row[col["topics"]] == ";".join(s.topics)
        assert datetime.fromisoformat(row[col["signed_up_at"]]) == s.created_at
        assert row[col["unsubscribed_at"]] == ""


# --- The download itself, and its audit record.


def test_attachment_with_a_dated_file_name(staff, app, frozen):
    frozen.set(datetime(2026, 4, 1, 23, 59, tzinfo=UTC))
    r = get_csv(staff)
    assert r.headers["Content-Disposition"] == 'attachment; filename="leads-2026-04-01.csv"'
    assert r.headers["Cache-Control"] == "no-store"


def test_every_export_is_audited(app, client):
    user_id = add_user(app, "exporter@example.com", Role.MARKETER)
    sign_in(client, user_id)
    seeded = store(app, make_leads())
    confirmed = sum(1 for s in seeded if s.status == "confirmed")
    get_csv(client, {"status": "confirmed", "q": "a"})
    get_csv(client, {"status": "confirmed", "excel": "1"})
    with app.app_context():
        events = db.session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
        assert [e.action for e in events] == ["leads.export", "leads.export"]
        first, second = events
        assert first.actor == "exporter@example.com"
        assert first.user_id == int(user_id.split(":")[0])
        assert first.details["filters"] == {"status": "confirmed", "q": "a", "sort": "newest"}
        assert first.details["rows"] == count(LeadFilters(status="confirmed", q="a"))[0]
        assert first.details["completed"] is True
        assert second.details["filters"] == {"status": "confirmed", "sort": "newest"}
        assert second.details["rows"] == confirmed
        assert second.details["excel"] is True
        assert first.at is not None


def test_bad_filters_on_the_export_are_a_readable_400(staff):
    r = staff.get("/marketing/leads.csv?since=2026-02-30")
    assert r.status_code == 400
    assert "since: use a date like 2026-01-31" in r.get_data(as_text=True)
    assert "attachment" not in r.headers.get("Content-Disposition", "")


# --- flask leads export writes the same bytes.


@pytest.mark.parametrize(
    ("cli", "web"),
    [
        (["--status", "confirmed"], {"status": "confirmed"}),
        (
            ["--topic", "newsletter", "--source", "cspo-certification-benefits", "--q", "a"],
            {"topic": "newsletter", "source": "cspo-certification-benefits", "q": "a"},
        ),
        (
            ["--since", "2026-03-01", "--until", "2026-03-10", "--sort", "email", "--excel"],
            {"since": "2026-03-01", "until": "2026-03-10", "sort": "email", "excel": "1"},
        ),
    ],
)
def test_cli_export_writes_the_same_bytes(app, staff, runner, tmp_path, cli, web):
    leads = make_leads()
    one(leads, 900, name='Doe, "JJ"\nJr')
    one(leads, 901, name="=1+1")
    one(leads, 902, name="Zoë")
    store(app, leads)
    out = tmp_path / "leads.csv"
    result = runner.invoke(args=["leads", "export", *cli, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "Wrote" in result.output
    assert out.read_bytes() == get_csv(staff, web).data
    with app.app_context():
        audit = db.session.execute(
            select(AuditEvent).where(AuditEvent.details["via"].as_string() == "cli")
        ).scalar_one()
        assert audit.action == "leads.export"
        assert audit.actor == "system"
        assert audit.details["rows"] == len(rows_of(out.read_bytes())) - 1


def test_cli_export_refuses_bad_filters_clearly(runner, tmp_path):
    result = runner.invoke(
        args=["leads", "export", "--since", "2026-02-30", "-o", str(tmp_path / "x.csv")]
    )
    assert result.exit_code == 2
    assert "since: use a date like 2026-01-31" in result.output


# --- 100,000 leads: streamed, flat memory (SQLite: generating is quicker).

BIG = 100_000


@pytest.fixture(scope="module")
def big_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export-big")
    app = create_app(
        {**base_config(tmp), "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp / 'big.sqlite3'}"}
    )
    with app.app_context():
        db.create_all()
        generate_leads(BIG, days=365, seed=3)
    user_id = add_user(app, "big@example.com", Role.MARKETER)
    yield app, user_id
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_iter_csv_yields_the_first_chunk_before_reading_the_rest(big_app):
    app, _ = big_app
    with app.app_context():
        counter = [0]
        chunks = export.iter_csv(LeadFilters(), counter=counter)
        first = next(chunks)
        assert counter[0] == ROWS_PER_CHUNK, "the first chunk waited for more rows"
        assert len(rows_of(first)) == ROWS_PER_CHUNK + 1
        second = next(chunks)
        assert counter[0] == 2 * ROWS_PER_CHUNK
        assert len(rows_of(second)) == ROWS_PER_CHUNK
        chunks.close()
        db.session.rollback()


def test_the_http_export_streams(big_app):
    app, user_id = big_app
    client = app.test_client()
    sign_in(client, user_id)

    def exports() -> int:
        with app.app_context():
            return (
                db.session.execute(select(AuditEvent.id).where(AuditEvent.action == "leads.export"))
                .all()
                .__len__()
            )

    before = exports()
    r = client.get("/marketing/leads.csv", buffered=False)
    assert r.status_code == 200
    body = iter(r.response)
    first = next(body)
    # The response has begun and the export has not finished: no audit row
    # yet, and the first chunk holds a thousand rows, not a hundred thousand.
    assert exports() == before
    assert first.startswith(",".join(HEADER).encode())
    assert first.count(b"\r\n") <= ROWS_PER_CHUNK + 1
    total = first.count(b"\r\n") + sum(chunk.count(b"\r\n") for chunk in body)
    r.close()
    assert total == BIG + 1
    with app.app_context():
        audit = db.session.execute(
            select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)
        ).scalar_one()
        assert audit.details["rows"] == BIG
        assert audit.details["completed"] is True


def test_an_abandoned_download_is_audited_as_incomplete(big_app):
    app, user_id = big_app
    client = app.test_client()
    sign_in(client, user_id)
    r = client.get("/marketing/leads.csv", buffered=False)
    body = iter(r.response)
    next(body)
    next(body)
    r.close()
    with app.app_context():
        audit = db.session.execute(
            select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)
        ).scalar_one()
        assert audit.details["completed"] is False
        assert 0 < audit.details["rows"] < BIG


def _export_peak(client, args: dict) -> tuple[int, int]:
    """(rows, peak bytes allocated by Python) for one full HTTP export."""
    gc.collect()
    tracemalloc.start()
    try:
        r = client.get("/marketing/leads.csv?" + urlencode(args), buffered=False)
        rows = sum(chunk.count(b"\r\n") for chunk in r.response) - 1
        r.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return rows, peak


def test_memory_does_not_grow_with_the_row_count(big_app):
    app, user_id = big_app
    client = app.test_client()
    sign_in(client, user_id)
    # About a fifth of the leads signed up in the last 73 days.
    recent = {"since": (clock.now().date() - timedelta(days=73)).isoformat()}
    _export_peak(client, recent)  # warm caches (compiled SQL, templates)
    small_rows, small_peak = _export_peak(client, recent)
    big_rows, big_peak = _export_peak(client, {})
    assert big_rows == BIG
    assert 10_000 < small_rows < 30_000
    ratio = big_peak / small_peak
    assert ratio < 1.5, (
        f"{small_rows:,} rows peaked at {small_peak / 1e6:.1f} MB, "
        f"{big_rows:,} rows at {big_peak / 1e6:.1f} MB ({ratio:.2f}x)"
    )
    assert big_peak < 30e6
    print(
        f"export peak: {small_rows:,} rows {small_peak / 1e6:.2f} MB, "
        f"{big_rows:,} rows {big_peak / 1e6:.2f} MB"
    )
