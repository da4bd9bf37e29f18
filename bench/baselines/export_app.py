"""Baseline export: Python's csv writer over a plain DB-API cursor (sqlite3,
or psycopg on PostgreSQL), streamed by bare Flask under the same gunicorn as
ours. Same table, same columns, same order, topics by group_concat."""

import csv
import io
import os
import sqlite3

from flask import Flask, Response

COLUMNS = (
    "public_id, email, name, status, {topics}, source_slug, source_placement, utm_source,"
    " utm_medium, utm_campaign, utm_term, utm_content, referrer, created_at, confirmed_at,"
    " unsubscribed_at"
)
TOPICS = {
    "sqlite": "(SELECT group_concat(topic, ';') FROM lead_topic WHERE lead_id = lead.id)",
    "postgresql": "(SELECT string_agg(topic, ';') FROM lead_topic WHERE lead_id = lead.id)",
}
HEADER = os.environ.get("BENCH_EXPORT_HEADER", "id").split(",")
app = Flask(__name__)


def connect():
    url = os.environ["DATABASE_URL"]
    if url.startswith("sqlite:///"):
        return sqlite3.connect(url[len("sqlite:///") :]), "sqlite"
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")), "postgresql"


@app.get("/leads.csv")
def leads_csv():
    def rows():
        conn, dialect = connect()
        cols = COLUMNS.format(topics=TOPICS[dialect])
        if dialect == "postgresql":  # a server-side cursor: stream, do not load
            cur = conn.cursor(name="export")
            cur.itersize = 2000
            cur.execute(f"SELECT {cols} FROM lead ORDER BY created_at DESC, id DESC")
        else:
            cur = conn.execute(f"SELECT {cols} FROM lead ORDER BY created_at DESC, id DESC")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(HEADER)
        for i, row in enumerate(cur, 1):
            writer.writerow(row)
            if i % 1000 == 0:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode()
        conn.close()

    return Response(rows(), mimetype="text/csv")


@app.get("/healthz")
def healthz():
    return "ok"
