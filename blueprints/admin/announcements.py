"""Admin: announcements, from draft through preview and test to schedule,
pause, resume and cancel, with their progress and audience."""

from __future__ import annotations

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from blueprints.admin.base import bp, sandboxed_mail
from blueprints.admin.forms import ActionForm, AnnouncementForm, ScheduleForm
from extensions import db
from models import Announcement
from services import clock, timezones
from services.campaigns import announcement_report, announcements, audience, classes
from services.mail import compose, templating
from services.mail.templating import MergeTagError
from services.reporting.lead_query import FilterError, LeadFilters
from services.staff import audit


def _announcement_or_404(public_id: str) -> Announcement:
    return announcements.by_public_id(public_id) or abort(404)


def _fill_choices(form: AnnouncementForm) -> None:
    upcoming = classes.upcoming_classes()
    form.training_class.choices = [SelectChoice("", "No class")] + [
        SelectChoice(c.public_id, f"{c.title} — {classes.local_times(c)[0]:%-d %b %Y}")
        for c in upcoming
    ]
    articles = current_app.extensions["articles"].all()
    form.source_slug.choices = (
        [SelectChoice("", "Any article or page")]
        + [SelectChoice(a.slug, a.title) for a in articles]
        + [SelectChoice("certified-scrum-product-owner-cspo-training", "CSPO training page")]
    )


def _announcement_input(form: AnnouncementForm) -> announcements.AnnouncementInput:
    cls = classes.class_by_public_id(form.training_class.data) if form.training_class.data else None
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
    anns = announcements.recent()
    return render_template(
        "admin/announcements.html",
        announcements=anns,
        samples=announcement_report.sample_subjects(anns),
    )


def _announcement_form_page(form, ann, status=200):
    return render_template(
        "admin/announcement_form.html",
        form=form,
        ann=ann,
        merge_tags=templating.MERGE_TAGS,
        body_only=templating.LEAD_TYPED,
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
    return render_template(
        "admin/announcement.html",
        ann=ann,
        preview=preview,
        sample_subject=announcement_report.sample_subject(ann),
        reach=audience.reach(audience.of(ann)),
        progress=announcement_report.progress(ann.id),
        skips=announcement_report.skips_by_reason(ann.id),
        live=ann.status in announcements.UNDERWAY,
        # In the Refresh link: a link to the page itself with only a new
        # #fragment would scroll, not load.
        now_stamp=int(clock.now().timestamp()),
        schedule_form=schedule_form,
        action=ActionForm(),
    )


@bp.get("/announcements/<public_id>/preview.html")
def announcement_preview_html(public_id: str):
    ann = _announcement_or_404(public_id)
    return sandboxed_mail(compose.preview_announcement(ann, current_user.email))


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
    return jsonify(
        status=ann.status.value,
        skips=announcement_report.skips_by_reason(ann.id),
        **announcement_report.progress(ann.id),
    )


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
    stmt = audience.leads(f.topic, request.args.get("source") or None, f.since, f.until)
    reach = audience.reach(stmt)
    return jsonify(count=reach.count, held_by_cap=reach.held_by_cap, cap_days=reach.cap_days)
