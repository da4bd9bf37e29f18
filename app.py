"""Application factory: config, extensions, blueprints, commands."""

from __future__ import annotations

import logging
from pathlib import Path

from dotenv import load_dotenv
from flask import Flask, abort, request
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config
from extensions import csrf, db, limiter, login_manager, migrate
from services.metrics import multiproc
from web import access, compression, hosts

BASE_DIR = Path(__file__).resolve().parent


def create_app(test_config: dict | None = None) -> Flask:
    load_dotenv(BASE_DIR / ".env")
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(Config.from_env(app.instance_path))
    if test_config is not None:
        app.config.from_mapping(test_config)
    # Derived from SITE_URL after every source of settings has been read.
    https = app.config["SITE_URL"].startswith("https://")
    app.config["SESSION_COOKIE_SECURE"] = https
    app.config["REMEMBER_COOKIE_SECURE"] = https
    app.config["PREFERRED_URL_SCHEME"] = "https" if https else "http"
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    if not app.config.get("SECRET_KEY"):
        if app.debug or app.testing:
            app.config["SECRET_KEY"] = "dev-only-not-secret"  # noqa: S105 (debug/testing only)
        else:
            raise RuntimeError(
                "SECRET_KEY is not set. Set it in the environment or in .env "
                "(make run creates one in instance/secret_key for you)."
            )
    # The host names this site answers for: Flask checks them, and
    # web.hosts.HostCheck answers every other one with a 400 page.
    app.config["TRUSTED_HOSTS"] = hosts.trusted_hosts(
        app.config["SITE_URL"], app.config["TRUSTED_HOSTS"] or (), local=app.debug or app.testing
    )

    # Before anything imports prometheus_client: it picks its mode then.
    multiproc.configure(app.instance_path, app.testing)
    from web import request_metrics

    # First of the after_request hooks, so it runs last (Flask runs them in reverse).
    compression.init_app(app)
    _configure_engine(app)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(BASE_DIR / "migrations"), render_as_batch=True)
    request_metrics.init_app(app)  # the first hook: every request has its endpoint noted
    # First of all: a request for another host gets its 400 page and no more.
    app.before_request(hosts.refuse_untrusted_host)
    # Then the CSV upload's own size limit, before anything reads a body.
    app.before_request(access.raise_upload_limit)
    # Before CSRFProtect's own check: a multipart part without a name lands
    # in request.form under None, and Flask-WTF would fail on it with a 500.
    app.before_request(_refuse_nameless_form_parts)
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)

    from blueprints import (
        account,
        admin,
        api,
        api_tokens,
        articles,
        auth,
        health,
        lead_import,
        marketing,
        metrics,
        seo,
        staff_links,
        subscriptions,
        webhooks,
    )
    from commands import register_commands
    from services.bounces import sns
    from services.content import ArticleStore
    from services.mail import dkim
    from services.reporting.page_views import ViewCounter
    from services.staff import sessions
    from web import errors, public_pages, routing, security, static_urls, template_filters
    from web import seo as seo_markup

    login_manager.user_loader(sessions.load)
    app.extensions["articles"] = ArticleStore(
        app.config["CONTENT_DIR"], check_seconds=0 if app.debug else 2.0
    )
    app.extensions["view_counter"] = ViewCounter(app.config["VIEW_FLUSH_SECONDS"])
    dkim.init_app(app)
    sns.init_app(app)
    security.init_app(app)
    routing.init_app(app)  # before the blueprints add their rules
    api.init_app(app)  # before errors: the site's error handlers replace smorest's
    errors.init_app(app)
    access.init_app(app)
    seo_markup.init_app(app)
    static_urls.init_app(app)
    template_filters.init_app(app)
    app.register_blueprint(subscriptions.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(staff_links.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(marketing.bp)
    app.register_blueprint(lead_import.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(seo.bp)
    app.register_blueprint(api_tokens.bp)
    app.register_blueprint(metrics.bp)
    # Last: its /<slug> route must not shadow the others.
    app.register_blueprint(articles.bp)
    # Reading pages has no limit to check (Flask-Limiter's public exemption).
    limiter.exempt(articles.bp)
    limiter.exempt(seo.bp)
    register_commands(app)
    # Anonymous reads of public pages are answered before the app...
    app.wsgi_app = public_pages.PublicPageCache(app)
    # ...for this site's own host names only...
    app.wsgi_app = hosts.HostCheck(app)
    # ...as the proxies in front say (their X-Forwarded-Host is checked too).
    if app.config["TRUSTED_PROXY_COUNT"]:
        n = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    # Outermost: the time of everything above, cache hits included.
    app.wsgi_app = request_metrics.RequestTimer(app.wsgi_app)

    if not app.debug and not app.testing:
        logging.basicConfig(
            level=app.config["LOG_LEVEL"],
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
        )
    return app


def _refuse_nameless_form_parts():
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and None in request.form:
        abort(400)


def _configure_engine(app: Flask) -> None:
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite"):
        # Several processes write (web workers, the delivery worker): wait for
        # the lock rather than fail with "database is locked".
        options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
        options.setdefault("connect_args", {}).setdefault("timeout", 30)
    else:
        options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
        options.setdefault("pool_pre_ping", True)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
