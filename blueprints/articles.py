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

from blueprints import page_cache
from blueprints.subscriptions import (
    new_signup_form,
    placeholder_signup_form,
    signup_form_values,
)
from extensions import db
from services import tokens
from services import training as classes_service
from services.content import TRAINING_PATH

bp = Blueprint("articles", __name__)


def store():
    return current_app.extensions["articles"]


@bp.get("/favicon.ico")
def favicon():
    # Browsers ask for it whatever the page says; answer instead of a 404 page.
    return redirect(url_for("static", filename="favicon.svg"), 301)


@bp.get("/")
def index():
    return render_template("articles/index.html", articles=store().all())


@bp.get(TRAINING_PATH)
def training():
    classes = classes_service.upcoming_classes()
    return render_template(
        "articles/training.html",
        classes=classes,
        months=classes_service.by_month(classes),
        form=new_signup_form("training"),
    )


@bp.get(f"{TRAINING_PATH}/<public_id>.ics")
def class_ics(public_id: str):
    cls = classes_service.class_by_public_id(public_id)
    if cls is None:
        abort(404)
    page = current_app.config["SITE_URL"] + TRAINING_PATH
    body = classes_service.ics(cls, current_app.config["SITE_NAME"], page)
    return Response(
        body,
        mimetype="text/calendar",
        headers={"Content-Disposition": f'attachment; filename="cspo-{cls.public_id}.ics"'},
    )


@bp.get("/register/<token>")
def register(token: str):
    """A tracked register click: counted, then sent on to the class's own
    registration page, and nowhere else."""
    try:
        cls = classes_service.record_click(token)
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
    extensions = current_app.extensions
    art = extensions["articles"].get(slug)
    if art is None:
        abort(404)
    req = request._get_current_object()
    if req.method == "GET":
        extensions["view_counter"].count(art.slug, req.headers.get("User-Agent", ""))
    if not page_cache.cacheable():
        return render_template(
            "articles/article.html",
            article=art,
            inline_form=new_signup_form("inline", art.slug),
            end_form=new_signup_form("end", art.slug),
        )
    return page_cache.render(
        f"article:{art.slug}",
        lambda: render_template(
            "articles/article.html",
            article=art,
            inline_form=placeholder_signup_form("inline", art.slug),
            end_form=placeholder_signup_form("end", art.slug),
        ),
        signup_form_values(("inline", "end")),
    )


@bp.app_template_global("training_local_times")
def _training_local_times(cls):
    return classes_service.local_times(cls)


@bp.app_template_global("class_when")
def _class_when(cls) -> str:
    return classes_service.when_text(cls)


@bp.app_template_global("register_link")
def _register_link(cls) -> str:
    from flask import url_for

    return url_for("articles.register", token=classes_service.register_token(cls, None, "page"))
