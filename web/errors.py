"""Error pages in the site's look. None of them may fail in turn."""

from __future__ import annotations

import logging

from flask import Flask, current_app, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from web import problems

log = logging.getLogger("leads.errors")


def _page(template: str, status: int, **ctx):
    return render_template(template, status=status, **ctx), status


def not_found(_exc):
    from blueprints.subscriptions.signup import new_signup_form

    return _page(
        "errors/404.html",
        404,
        articles=current_app.extensions["articles"].all(),
        form=new_signup_form("not-found"),  # its own placement in the funnel
    )


def csrf_error(_exc: CSRFError):
    # Staff forms only (the public ones carry no token): most often a form
    # left open longer than its token lives.
    return _page(
        "errors/generic.html",
        400,
        title="This form had expired",
        detail="Go back, reload the page and try again.",
    )


def http_error(exc: HTTPException):
    if problems.wanted():
        return problems.from_http_exception(exc)
    if exc.code == 404:
        return not_found(exc)
    return _page("errors/generic.html", exc.code or 500, title=exc.name, detail=_friendly(exc.code))


def server_error(exc):
    log.exception("unhandled error on %s", request.path)
    try:
        if problems.wanted():
            return problems.problem(500)
        return _page("errors/500.html", 500)
    except Exception:  # the template itself failed: plain text, still no stack trace
        return "Something went wrong on our side. Please try again in a minute.", 500


def _friendly(code: int | None) -> str:
    return {
        400: "We could not understand that request. Go back and check the form.",
        403: "You do not have access to this page.",
        405: "This page does not accept that kind of request.",
        410: "This link has expired.",
        413: "That was more data than any of our forms accepts.",
        429: "Too many attempts in a short time. Please wait a minute and try again.",
    }.get(code or 0, "Something went wrong.")


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, csrf_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, server_error)
