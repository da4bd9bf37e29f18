"""Admin: classes, announcements, outbox, suppressions, users, audit log."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from markupsafe import escape
from wtforms.fields.choices import SelectChoice

from blueprints import public_pages
from blueprints.access import protect_blueprint
from blueprints.admin_forms import (
    ActionForm,
    AnnouncementForm,
    ClassForm,
    ScheduleForm,
    SuppressForm,
    UserCreateForm,
    UserUpdateForm,
)
from extensions import db
from models import (
    Announcement,
    ClassStatus,
    MailKind,
    OutboxMessage,
    OutboxStatus,
    Role,
    TrainingClass,
    email_hash,
)
from services import (
    announcements,
    audit,
    auth,
    clock,
    compose,
    outbox,
    outbox_report,
    suppressions,
    templating,
    timezones,
    training,
)
from services.addresses import InvalidAddress, normalise
from services.lead_query import FilterError, LeadFilters
from services.templating import MergeTagError

bp = Blueprint("admin", __name__, url_prefix="/admin")
protect_blueprint(bp, Role.ADMIN)
PER_PAGE = 50


@bp.app_template_global("local_time")
def _local_time(moment, zone_name: str):
    return moment.astimezone(timezones.zone(zone_name))


@bp.app_template_global("zone_suggestions")
def _zone_suggestions():
    return timezones.COMMON_ZONES


@bp.get("/", endpoint="index")
def index():
    return render_template(
        "admin/index.html",
        classes=training.upcoming_classes(limit=5),
        scheduled=announcements.scheduled(),
        report=outbox_report.status_report(5),
    )


# --- Classes


@bp.get("/classes")
def classes():
    return render_template("admin/classes.html", classes=training.recent_classes(), now=clock.now())


def _class_input(form: ClassForm) -> training.ClassInput:
    return training.ClassInput(
        title=form.title.data.strip(),
        course=(form.course.data or "CSPO").strip(),
        start_day=form.start_date.data,
        start_time=form.start_time.data,
        end_day=form.end_date.data,
        end_time=form.end_time.data,
        timezone=form.timezone.data.strip(),
        online=form.online.data,
        location=(form.location.data or "").strip() or None,
        trainer=(form.trainer.data or "").strip() or None,
        price=form.price.data,
        currency=(form.currency.data or "EUR").strip(),
        seats=form.seats.data,
        seats_taken=form.seats_taken.data or 0,
        registration_url=(form.registration_url.data or "").strip() or None,
        status=ClassStatus(form.status.data),
    )


def _save_class(cls: TrainingClass | None, form: ClassForm):
    """Create (cls None) or update a class; a redirect, or None on an error."""
    is_new = cls is None
    try:
        if cls is None:
            cls, notes = training.create(_class_input(form))
        else:
            notes = training.apply(cls, _class_input(form))
    except (training.ClassError, timezones.TimezoneError) as exc:
        form.form_errors.append(str(exc))
        return None
    audit.record(
        current_user,
        "class.create" if is_new else "class.update",
        cls.public_id,
        title=cls.title,
        starts_at=cls.starts_at.isoformat(),
    )
    db.session.commit()
    public_pages.forget()
    for note in notes:
        flash(note, "info")
    flash(f"Saved “{cls.title}”.", "info")
    return redirect(url_for(".classes"), 303)


@bp.route("/classes/new", methods=["GET", "POST"])
def class_new():
    form = ClassForm()
    if form.validate_on_submit():
        done = _save_class(None, form)
        if done:
            return done
    status = 400 if request.method == "POST" else 200
    return render_template("admin/class_form.html", form=form, cls=None), status


@bp.route("/classes/<public_id>", methods=["GET", "POST"])
def class_edit(public_id: str):
    cls = training.class_by_public_id(public_id) or abort(404)
    form = ClassForm()
    if request.method == "GET":
        start, end = training.local_times(cls)
        form.process(
            obj=cls,
            start_date=start.date(),
            start_time=start.time(),
            end_date=end.date(),
            end_time=end.time(),
            status=cls.status.value,
        )
    elif form.validate_on_submit():
        done = _save_class(cls, form)
        if done:
            return done
    status = 400 if request.method == "POST" else 200
    return render_template("admin/class_form.html", form=form, cls=cls), status


@bp.post("/classes/<public_id>/cancel")
def class_cancel(public_id: str):
    cls = training.class_by_public_id(public_id) or abort(404)
    if not ActionForm().validate_on_submit():
        abort(400)
    training.cancel(cls)
    audit.record(current_user, "class.cancel", cls.public_id, title=cls.title)
    db.session.commit()
    public_pages.forget()
    flash(f"“{cls.title}” is cancelled. Reminders for it will not be sent.", "info")
    return redirect(url_for(".classes"), 303)


# --- Announcements


def _announcement_or_404(public_id: str) -> Announcement:
    return announcements.by_public_id(public_id) or abort(404)


def _fill_choices(form: AnnouncementForm) -> None:
    upcoming = training.upcoming_classes()
    form.training_class.choices = [SelectChoice("", "No class")] + [
        SelectChoice(c.public_id, f"{c.title} — {training.local_times(c)[0]:%-d %b %Y}")
        for c in upcoming
    ]
    articles = current_app.extensions["articles"].all()
    form.source_slug.choices = (
        [SelectChoice("", "Any article or page")]
        + [SelectChoice(a.slug, a.title) for a in articles]
        + [SelectChoice("certified-scrum-product-owner-cspo-training", "CSPO training page")]
    )


def _announcement_input(form: AnnouncementForm) -> announcements.AnnouncementInput:
    cls = (
        training.class_by_public_id(form.training_class.data) if form.training_class.data else None
    )
    return announcements.AnnouncementInput(
        subject=form.subject.data,
        body=form.body.data,
        topic=form.topic.data,
        training_class=cls,
        source_slug=form.source_slug.data or None,
        signed_up_from=form.signed_up_from.data,
        signed_up_until=form.signed_up_until.data,
        ignore_frequency_cap=form.ignore_frequency_cap.data,
    )


@bp.get("/announcements")
def announcement_list():
    return render_template("admin/announcements.html", announcements=announcements.recent())


def _announcement_form_page(form, ann, status=200):
    return render_template(
        "admin/announcement_form.html", form=form, ann=ann, merge_tags=templating.MERGE_TAGS
    ), status


@bp.route("/announcements/new", methods=["GET", "POST"])
def announcement_new():
    form = AnnouncementForm()
    _fill_choices(form)
    if request.method == "GET" and request.args.get("class"):
        form.training_class.data = request.args["class"]
        form.topic.data = "cspo-classes"
    if form.validate_on_submit():
        try:
            ann = announcements.create(_announcement_input(form), current_user)
        except (announcements.AnnouncementError, MergeTagError) as exc:
            form.form_errors.append(str(exc))
        else:
            audit.record(current_user, "announcement.create", ann.public_id, subject=ann.subject)
            db.session.commit()
            flash("Draft saved. Check the preview, send yourself a test, then schedule it.", "info")
            return redirect(url_for(".announcement_detail", public_id=ann.public_id), 303)
    return _announcement_form_page(form, None, 400 if request.method == "POST" else 200)


@bp.route("/announcements/<public_id>/edit", methods=["GET", "POST"])
def announcement_edit(public_id: str):
    ann = _announcement_or_404(public_id)
    form = AnnouncementForm(obj=ann if request.method == "GET" else None)
    _fill_choices(form)
    if request.method == "GET":
        form.training_class.data = ann.training_class.public_id if ann.training_class else ""
        form.source_slug.data = ann.source_slug or ""
    elif form.validate_on_submit():
        try:
            announcements.apply(ann, _announcement_input(form))
        except (announcements.AnnouncementError, MergeTagError) as exc:
            form.form_errors.append(str(exc))
        else:
            audit.record(current_user, "announcement.update", ann.public_id)
            db.session.commit()
            flash("Saved.", "info")
            return redirect(url_for(".announcement_detail", public_id=ann.public_id), 303)
    return _announcement_form_page(form, ann, 400 if request.method == "POST" else 200)


@bp.get("/announcements/<public_id>")
def announcement_detail(public_id: str):
    ann = _announcement_or_404(public_id)
    preview = compose.preview_announcement(ann, current_user.email)
    schedule_form = ScheduleForm()
    # send_timezone is "UTC" by default: until the admin has chosen one, offer
    # the linked class's own zone (or the company's).
    if ann.send_at is not None:
        schedule_form.timezone.data = ann.send_timezone
    elif ann.training_class is not None:
        schedule_form.timezone.data = ann.training_class.timezone
    else:
        schedule_form.timezone.data = "Europe/Berlin"
    count = announcements.audience_count(announcements.audience_of(ann))
    return render_template(
        "admin/announcement.html",
        ann=ann,
        preview=preview,
        audience=count,
        progress=announcements.progress(ann.id),
        schedule_form=schedule_form,
        action=ActionForm(),
    )


@bp.get("/announcements/<public_id>/preview.html")
def announcement_preview_html(public_id: str):
    preview = compose.preview_announcement(_announcement_or_404(public_id), current_user.email)
    html = preview[2] if isinstance(preview, tuple) else f"<p>{escape(preview)}</p>"
    return _sandboxed_html(html)


def _sandboxed_html(html: str) -> Response:
    """Mail HTML shown inside the admin: no scripts, no network, own origin."""
    resp = Response(html, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = (
        "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    )
    resp.headers["X-Frame-Options"] = "SAMEORIGIN"
    return resp


@bp.post("/announcements/<public_id>/test")
def announcement_test(public_id: str):
    ann = _announcement_or_404(public_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    preview = compose.preview_announcement(ann, current_user.email)
    if isinstance(preview, str):
        flash(preview, "error")
    else:
        announcements.queue_test(ann, current_user.email)
        audit.record(current_user, "announcement.test", ann.public_id)
        db.session.commit()
        flash(f"A test is on its way to {current_user.email}.", "info")
    return redirect(url_for(".announcement_detail", public_id=public_id), 303)


@bp.post("/announcements/<public_id>/schedule")
def announcement_schedule(public_id: str):
    ann = _announcement_or_404(public_id)
    form = ScheduleForm()
    if not form.validate_on_submit():
        flash("Give a date, a time and a time zone.", "error")
        return redirect(url_for(".announcement_detail", public_id=public_id), 303)
    try:
        note = announcements.schedule(
            ann,
            form.send_date.data,
            form.send_time.data,
            form.timezone.data.strip(),
            now=form.send_now.data,
        )
    except (announcements.AnnouncementError, timezones.TimezoneError) as exc:
        flash(str(exc), "error")
        return redirect(url_for(".announcement_detail", public_id=public_id), 303)
    audit.record(
        current_user,
        "announcement.schedule",
        ann.public_id,
        send_at=ann.send_at.isoformat(),
        timezone=ann.send_timezone,
    )
    db.session.commit()
    if note:
        flash(note, "info")
    flash(
        "Scheduled. The worker starts sending at that time."
        if not form.send_now.data
        else "Sending now: the progress below updates as mail goes out.",
        "info",
    )
    return redirect(url_for(".announcement_detail", public_id=public_id), 303)


ACTIONS = {
    "unschedule": (announcements.unschedule, "Back to draft."),
    "pause": (announcements.pause, "Paused: nothing more goes out until you resume."),
    "resume": (announcements.resume, "Resumed."),
    "cancel": (announcements.cancel, "Cancelled: mail not yet sent will not go."),
}


@bp.post("/announcements/<public_id>/<any(unschedule, pause, resume, cancel):action>")
def announcement_action(public_id: str, action: str):
    ann = _announcement_or_404(public_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    fn, message = ACTIONS[action]
    try:
        fn(ann)
    except announcements.AnnouncementError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        audit.record(current_user, f"announcement.{action}", ann.public_id)
        db.session.commit()
        flash(message, "info")
    return redirect(url_for(".announcement_detail", public_id=public_id), 303)


@bp.get("/announcements/<public_id>/progress.json")
def announcement_progress(public_id: str):
    ann = _announcement_or_404(public_id)
    return jsonify(status=ann.status.value, **announcements.progress(ann.id))


@bp.get("/audience-count.json")
def audience_count():
    try:
        f = LeadFilters.parse(
            {
                "since": request.args.get("from"),
                "until": request.args.get("until"),
                "topic": request.args.get("topic"),
            }
        )
    except FilterError as exc:
        return jsonify(error=str(exc)), 400
    if not f.topic:
        return jsonify(error="choose a topic"), 400
    stmt = announcements.audience(f.topic, request.args.get("source") or None, f.since, f.until)
    return jsonify(count=announcements.audience_count(stmt))


# --- Outbox and suppressions


@bp.get("/outbox")
def outbox_list():
    status = request.args.get("status", "")
    kind = request.args.get("kind", "")
    statuses = [s.value for s in OutboxStatus]
    kinds = [k.value for k in MailKind]
    page = outbox_report.page(
        OutboxStatus(status) if status in statuses else None,
        MailKind(kind) if kind in kinds else None,
        before=request.args.get("before", type=int),
        per_page=PER_PAGE,
    )
    return render_template(
        "admin/outbox.html",
        rows=page.rows,
        status=status,
        kind=kind,
        next_before=page.next_before,
        report=outbox_report.status_report(5),
        statuses=statuses,
        kinds=kinds,
        action=ActionForm(),
    )


def _row_or_404(row_id: int) -> OutboxMessage:
    return outbox_report.by_id(row_id) or abort(404)


@bp.get("/outbox/<int:row_id>")
def outbox_detail(row_id: int):
    row = _row_or_404(row_id)
    return render_template(
        "admin/outbox_row.html", row=row, rendered=compose.render_stored(row), action=ActionForm()
    )


@bp.get("/outbox/<int:row_id>/html")
def outbox_html(row_id: int):
    rendered = compose.render_stored(_row_or_404(row_id))
    return _sandboxed_html(
        rendered[2] if isinstance(rendered, tuple) else f"<p>{escape(rendered)}</p>"
    )


@bp.post("/outbox/<int:row_id>/retry")
def outbox_retry(row_id: int):
    if not ActionForm().validate_on_submit():
        abort(400)
    if outbox.retry(row_id):
        audit.record(current_user, "outbox.retry", str(row_id))
        db.session.commit()
        flash("Queued again: the worker will try it now.", "info")
    else:
        flash("Only a failed mail can be retried.", "error")
    return redirect(url_for(".outbox_detail", row_id=row_id), 303)


@bp.route("/suppressions", methods=["GET", "POST"], endpoint="suppressions")
def suppression_list():
    form = SuppressForm()
    if form.validate_on_submit():
        try:
            address = normalise(form.email.data)
        except InvalidAddress as exc:
            form.email.errors.append(str(exc))
        else:
            if suppressions.suppress(address, "manual", f"added by {current_user.email}"):
                audit.record(current_user, "suppression.add", email_hash(address)[:12])
                db.session.commit()
            flash(f"{address} will not be mailed.", "info")
            return redirect(url_for(".suppressions"), 303)
    status = 400 if request.method == "POST" else 200
    return render_template(
        "admin/suppressions.html",
        rows=suppressions.recent(),
        total=suppressions.count(),
        form=form,
    ), status


# --- Users and audit


@bp.route("/users", methods=["GET", "POST"])
def users():
    form = UserCreateForm()
    if form.validate_on_submit():
        try:
            user = auth.create_user(form.email.data, form.password.data, Role(form.role.data))
        except auth.AuthError as exc:
            form.form_errors.append(str(exc))
        else:
            audit.record(current_user, "user.create", user.email, role=user.role.value)
            db.session.commit()
            flash(f"Created {user.role.value} {user.email}.", "info")
            return redirect(url_for(".users"), 303)
    status = 400 if request.method == "POST" else 200
    return render_template(
        "admin/users.html", users=auth.users(), form=form, update_form=UserUpdateForm()
    ), status


@bp.post("/users/<int:user_id>")
def user_update(user_id: int):
    user = auth.user_by_id(user_id) or abort(404)
    form = UserUpdateForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        changes = auth.update_user(user, Role(form.role.data), form.active.data, by=current_user)
    except auth.AuthError as exc:
        flash(str(exc), "error")
        return redirect(url_for(".users"), 303)
    if changes:
        audit.record(current_user, "user.update", user.email, **changes)
        db.session.commit()
        flash(f"Updated {user.email}.", "info")
    return redirect(url_for(".users"), 303)


@bp.get("/audit")
def audit_log():
    page = audit.page(request.args.get("before", type=int), PER_PAGE)
    return render_template("admin/audit.html", rows=page.rows, next_before=page.next_before)
