"""Articles, the article list and the CSPO training page."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)

from blueprints.subscriptions.signup import new_signup_form
from extensions import db
from services import site_index, tokens
from services.campaigns import classes as classes_service
from services.content import TRAINING_PATH
from services.reporting.page_views import is_bot
from web import public_pages, seo

bp = Blueprint("articles", __name__)


def store():
    return current_app.extensions["articles"]


@bp.get("/favicon.ico")
def favicon():
    # Browsers ask for it whatever the page says; answer instead of a 404 page.
    return redirect(url_for("static", filename="favicon.svg"), 301)


@bp.get("/")
def index():
    articles = store().all()
    return public_pages.serve(
        "articles/index.html",
        lambda: {"articles": articles},
        last_modified=max((a.modified for a in articles if a.modified), default=None),
    )


TRAINING_DESCRIPTION = (
    "Upcoming Certified Scrum Product Owner (CSPO) classes: dates, times, places and prices."
)


def _training_context() -> dict:
    classes = classes_service.upcoming_classes()
    site_url, site_name = current_app.config["SITE_URL"], current_app.config["SITE_NAME"]
    return {
        "classes": classes,
        "months": classes_service.by_month(classes),
        "form": new_signup_form("training"),
        "description": TRAINING_DESCRIPTION,
        "structured_data": site_index.course_ld(
            classes, site_url + TRAINING_PATH, site_name, site_url, TRAINING_DESCRIPTION
        ),
    }


@bp.get(TRAINING_PATH)
def training():
    # Rendered once per stamp period (public_pages.PublicPageCache), and at
    # once after a class is saved in this process (admin views).
    return public_pages.serve("articles/training.html", _training_context)


@bp.get(f"{TRAINING_PATH}/<public_id>.ics")
def class_ics(public_id: str):
    cls = classes_service.class_by_public_id(public_id)
    if cls is None:
        abort(404)
    site_url = current_app.config["SITE_URL"]
    # The counted register link, as on the page: clicks from calendars count too.
    token = classes_service.register_token(cls, None, "calendar")
    register = site_url + url_for("articles.register", token=token)
    body = classes_service.ics(
        cls, current_app.config["SITE_NAME"], site_url + TRAINING_PATH, register
    )
    return Response(
        body,
        mimetype="text/calendar",
        headers={"Content-Disposition": f'attachment; filename="cspo-{cls.public_id}.ics"'},
    )


@bp.get("/register/<token>")
def register(token: str):
    """A tracked register click, sent on to the class's own registration
    page and nowhere else. Counted for browsers only: mail link scanners
    and other known bots (services.reporting.page_views.is_bot) open it too, and HEAD
    changes nothing."""
    counted = request.method == "GET" and not is_bot(request.headers.get("User-Agent"))
    try:
        cls = classes_service.record_click(token, count=counted)
    except tokens.TokenInvalid:
        abort(400)
    except classes_service.ClassError as exc:
        return render_template(
            "errors/generic.html", title="Registration is closed", detail=str(exc)
        ), 410
    db.session.commit()
    return redirect(cls.registration_url, 302)


@bp.get("/<slug>")
def article(slug: str):
    art = store().get(slug)
    if art is None:
        abort(404)
    site_url, site_name = current_app.config["SITE_URL"], current_app.config["SITE_NAME"]
    return public_pages.serve(
        "articles/article.html",
        lambda: {
            "article": art,
            "inline_form": new_signup_form("inline", art.slug),
            "end_form": new_signup_form("end", art.slug),
            "structured_data": site_index.article_ld(
                art, site_url + art.path, site_name, site_url, seo.share_image(art)
            ),
        },
        last_modified=art.modified,
        view_slug=art.slug,
    )


@bp.app_template_global("training_local_times")
def _training_local_times(cls):
    return classes_service.local_times(cls)


@bp.app_template_global("class_when")
def _class_when(cls) -> str:
    return classes_service.when_text(cls)


@bp.app_template_global("class_event_dates")
def _class_event_dates(cls) -> tuple[str, str]:
    return site_index.event_dates(cls)


@bp.app_template_global("class_event_schedule")
def _class_event_schedule(cls) -> dict | None:
    return site_index.event_schedule(cls)


@bp.app_template_global("register_link")
def _register_link(cls) -> str:
    from flask import url_for

    return url_for("articles.register", token=classes_service.register_token(cls, None, "page"))
