"""/marketing/import: upload a CSV of leads, confirm the column mapping,
read the dry run's counts, start the import and watch it (a worker runs it)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import BooleanField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from extensions import db
from models import ImportStatus, Role
from services.imports import jobs, reader, report, uploads
from web.access import protect_blueprint
from web.forms import HtmlForm, MultiCheckboxField, known_topic, topic_choices

bp = Blueprint("lead_import", __name__, url_prefix="/marketing/import")
protect_blueprint(bp, Role.MARKETER)

ISSUES_SHOWN = 200


class UploadForm(HtmlForm):
    topics = MultiCheckboxField("Topics every imported lead gets", validators=[known_topic])
    source = StringField("Source label (for rows without a source column)", [Length(max=200)])
    consent = TextAreaField(
        "Basis of consent: what these people agreed to, where and when",
        [DataRequired(), Length(max=2000)],
    )
    confirm = BooleanField("Ask each new lead to confirm by email (they stay pending until then)")


class ActionForm(HtmlForm):
    """A button: the CSRF token only."""


def _job_or_404(public_id: str):
    job = report.by_public_id(public_id)
    if job is None:
        abort(404)
    return job


@bp.get("/", endpoint="index")
def index_page():
    form = UploadForm()
    form.topics.choices = topic_choices()
    return render_template("marketing/import.html", form=form, imports=report.recent())


@bp.post("/", endpoint="upload")
def upload():
    form = UploadForm()
    form.topics.choices = topic_choices()
    upload = request.files.get("file")
    if not form.validate() or upload is None:
        if upload is None:
            flash("Choose a CSV file to upload.", "error")
        return render_template("marketing/import.html", form=form, imports=report.recent()), 400
    try:
        job = uploads.receive(
            upload.stream,
            upload.filename or "upload.csv",
            topic_slugs=form.topics.data,
            source=form.source.data,
            consent_text=form.consent.data,
            confirm_by_mail=form.confirm.data,
            user=current_user,
        )
    except (jobs.ImportProblem, reader.ImportFileError) as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return render_template("marketing/import.html", form=form, imports=report.recent()), 400
    db.session.commit()
    return redirect(url_for(".show", public_id=job.public_id), 303)


@bp.get("/<public_id>", endpoint="show")
def show(public_id: str):
    job = _job_or_404(public_id)
    preview = uploads.preview(job) if job.status == ImportStatus.UPLOADED else []
    return render_template(
        "marketing/import_job.html",
        job=job,
        form=ActionForm(),
        fields=reader.FIELDS,
        mapping=jobs.mapping_of(job),
        preview=preview,
        progress=report.progress(job),
        running=uploads.in_progress(job),
        issues=report.issues(job.id, ISSUES_SHOWN) if job.rows_done else [],
        issues_shown=ISSUES_SHOWN,
    )


@bp.get("/<public_id>/progress.json", endpoint="progress")
def progress(public_id: str):
    return jsonify(report.progress(_job_or_404(public_id)))


def _act(public_id: str, action) -> object:
    job = _job_or_404(public_id)
    if not ActionForm().validate():
        abort(400)
    try:
        action(job)
    except (jobs.ImportProblem, reader.ImportFileError) as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for(".show", public_id=public_id), 303)
    db.session.commit()
    return redirect(url_for(".show", public_id=public_id), 303)


@bp.post("/<public_id>/check", endpoint="check")
def check(public_id: str):
    """The confirmed mapping (one select per column), then a dry run."""

    def confirm(job):
        fields = {}
        for index in range(len(job.mapping["columns"])):
            chosen = request.form.get(f"column-{index}", "")
            if chosen:
                fields[index] = chosen
        uploads.confirm_mapping(job, fields, current_user)

    return _act(public_id, confirm)


@bp.post("/<public_id>/start", endpoint="start")
def start(public_id: str):
    return _act(public_id, lambda job: uploads.start(job, current_user))


@bp.post("/<public_id>/cancel", endpoint="cancel")
def cancel(public_id: str):
    return _act(public_id, lambda job: uploads.cancel(job, current_user))
