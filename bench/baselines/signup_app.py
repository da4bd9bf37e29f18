"""Baseline signup: Flask + Flask-SQLAlchemy, validate the email, insert the
lead and its confirmation outbox row, commit. No CSRF, consent or limits."""

import os
import secrets
from datetime import UTC, datetime

from email_validator import EmailNotValidError, validate_email
from flask import Flask, redirect, request
from flask_sqlalchemy import SQLAlchemy

from bench.baselines import sqlite_settings

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
db = SQLAlchemy(app)
sqlite_settings(app, db)


class Lead(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    public_id = db.Column(db.String(24))
    email = db.Column(db.String(320), unique=True)
    status = db.Column(db.String(20))
    created_at = db.Column(db.DateTime)


class OutboxMessage(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    kind, status = db.Column(db.String(20)), db.Column(db.String(20))
    lead_id = db.Column(db.ForeignKey("lead.id"))
    send_after, created_at = db.Column(db.DateTime), db.Column(db.DateTime)
    attempts = db.Column(db.Integer, default=0)


@app.post("/signup")
def signup():
    try:
        email = validate_email(request.form.get("email", ""), check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc), 400
    now = datetime.now(UTC).replace(tzinfo=None)
    lead = Lead(
        public_id=secrets.token_urlsafe(12),
        email=email.normalized.lower(),
        status="pending",
        created_at=now,
    )
    db.session.add(lead)
    db.session.flush()
    db.session.add(
        OutboxMessage(
            kind="confirmation", status="queued", lead_id=lead.id, send_after=now, created_at=now
        )
    )
    db.session.commit()
    return redirect("/thanks", 303)


@app.get("/healthz")
def healthz():
    return "ok"
