"""Articles, the article list and the CSPO training page."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request

from blueprints.subscriptions import new_signup_form
from services import training as classes_service
from services.content import TRAINING_PATH

bp = Blueprint("articles", __name__)


def store():
    return current_app.extensions["articles"]


@bp.get("/")
def index():
    return render_template("articles/index.html", articles=store().all())


@bp.get(TRAINING_PATH)
def training():
    classes = classes_service.upcoming_classes()
    return render_template(
        "articles/training.html",
        classes=classes,
        form=new_signup_form("training"),
    )


@bp.get("/<slug>")
def article(slug: str):
    art = store().get(slug)
    if art is None:
        abort(404)
    if request.method == "GET":
        current_app.extensions["view_counter"].count(art.slug, request.user_agent.string)
    return render_template(
        "articles/article.html",
        article=art,
        inline_form=new_signup_form("inline", art.slug),
        end_form=new_signup_form("end", art.slug),
    )


@bp.app_template_global("training_local_times")
def _training_local_times(cls):
    return classes_service.local_times(cls)
