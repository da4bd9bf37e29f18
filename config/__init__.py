"""Configuration read from the environment.

The defaults are the embedded mode: SQLite in the instance folder, mail written
as .eml files, in-memory rate limits. Every setting is an environment variable
of the same name (a `.env` file is read when present). Each is parsed and
checked here, at start-up: a bad value stops the app with a ConfigError that
names the setting and the value, rather than failing later in a request or in
the worker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from config import mail
from config.environment import ConfigError, Environment
from config.mail import VERP_SEPARATOR

__all__ = ["BASE_DIR", "VERP_SEPARATOR", "Config", "ConfigError"]

BASE_DIR = Path(__file__).resolve().parent.parent
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAIL_BACKENDS = ("file", "smtp", "console")


class Config:
    """Settings with their defaults; `from_env` reads and checks the environment."""

    @classmethod
    def from_env(cls, instance_path: str, environ: Mapping[str, str] | None = None) -> dict:
        """The settings as a dict for app.config; ConfigError on a bad value."""
        env = Environment(os.environ if environ is None else environ)
        instance = Path(instance_path)
        port = env.integer("PORT", 5000, minimum=1, maximum=65535)
        mail_use_tls, mail_use_ssl = env.flag("MAIL_USE_TLS"), env.flag("MAIL_USE_SSL")
        if mail_use_tls and mail_use_ssl:
            raise ConfigError(
                "MAIL_USE_TLS and MAIL_USE_SSL are both on: set one (STARTTLS, or TLS "
                "from the first byte), not both"
            )
        return {
            "SECRET_KEY": env.text("SECRET_KEY"),
            "SECRET_KEY_FALLBACKS": env.items("SECRET_KEY_FALLBACKS"),
            "SQLALCHEMY_DATABASE_URI": env.database_url(
                "DATABASE_URL", f"sqlite:///{instance / 'leads.sqlite3'}"
            ),
            # Links in mail point at this server unless told otherwise.
            "SITE_URL": env.site_url("SITE_URL", f"http://127.0.0.1:{port}"),
            "SITE_NAME": env.text("SITE_NAME", "Scrum Academy"),
            "COMPANY_POSTAL_ADDRESS": env.text(
                "COMPANY_POSTAL_ADDRESS", "Scrum Academy, 1 Example Street, 10115 Berlin, Germany"
            ),
            "CONTENT_DIR": env.directory("CONTENT_DIR", BASE_DIR / "content"),
            "PORT": port,
            "LOG_LEVEL": env.choice("LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
            # Mail
            "MAIL_BACKEND": env.choice("MAIL_BACKEND", "file", MAIL_BACKENDS),
            "MAIL_FILE_DIR": env.text("MAIL_FILE_DIR", str(instance / "mail")),
            "MAIL_SERVER": env.text("MAIL_SERVER", "localhost"),
            "MAIL_PORT": env.integer("MAIL_PORT", 25, minimum=1, maximum=65535),
            "MAIL_USE_TLS": mail_use_tls,
            "MAIL_USE_SSL": mail_use_ssl,
            "MAIL_USERNAME": env.text("MAIL_USERNAME"),
            "MAIL_PASSWORD": env.text("MAIL_PASSWORD"),
            "MAIL_DEFAULT_SENDER": env.text(
                "MAIL_DEFAULT_SENDER", "Scrum Academy <hello@scrum-academy.example>"
            ),
            "MAIL_TIMEOUT": env.number("MAIL_TIMEOUT", 30.0, minimum=0.1),
            "MAIL_MAX_ATTEMPTS": env.integer("MAIL_MAX_ATTEMPTS", 8, minimum=1),
            "MAIL_UNSUBSCRIBE_MAILTO": env.text("MAIL_UNSUBSCRIBE_MAILTO"),
            "MAIL_CHECK_DELIVERABILITY": env.flag("MAIL_CHECK_DELIVERABILITY"),
            # Signing with DKIM: all three, or none.
            **mail.dkim(env),
            # Bounces: each mail's envelope sender is this address with a
            # signed tag (VERP); None keeps the From address.
            "MAIL_BOUNCE_ADDRESS": mail.bounce_address(env),
            "BOUNCE_SOFT_LIMIT": env.integer("BOUNCE_SOFT_LIMIT", 3, minimum=1),
            "BOUNCE_SOFT_DAYS": env.integer("BOUNCE_SOFT_DAYS", 30, minimum=1),
            **mail.bounce_imap(env),
            # ESP webhooks (POST /webhooks/<provider>): unset refuses them.
            **mail.webhooks(env),
            "WEBHOOK_RATE_LIMIT": env.rate_limit("WEBHOOK_RATE_LIMIT", "600 per minute"),
            # Outgoing webhooks (/admin/webhooks): private targets only for tests
            # and trusted networks; a receiver down this long is disabled.
            "WEBHOOK_ALLOW_PRIVATE_TARGETS": env.flag("WEBHOOK_ALLOW_PRIVATE_TARGETS"),
            "WEBHOOK_DISABLE_AFTER_DAYS": env.integer("WEBHOOK_DISABLE_AFTER_DAYS", 5, minimum=1),
            "WEBHOOK_LOG_DAYS": env.integer("WEBHOOK_LOG_DAYS", 30, minimum=1),
            "WEBHOOK_TIMEOUT": env.number("WEBHOOK_TIMEOUT", 10.0, minimum=0.1),
            # Worker
            "WORKER_BATCH_SIZE": env.integer("WORKER_BATCH_SIZE", 50, minimum=1),
            "WORKER_LEASE_SECONDS": env.integer("WORKER_LEASE_SECONDS", 120, minimum=1),
            "WORKER_POLL_SECONDS": env.number("WORKER_POLL_SECONDS", 1.0),
            "WORKER_BACKOFF_BASE_SECONDS": env.number("WORKER_BACKOFF_BASE_SECONDS", 60.0),
            "WORKER_CONNECTIONS": env.integer("WORKER_CONNECTIONS", 1, minimum=1),
            "WORKER_RATE_PER_SECOND": env.number("WORKER_RATE_PER_SECOND", 0.0),
            "WORKER_PLAN_SECONDS": env.number("WORKER_PLAN_SECONDS", 15.0),
            # Follow-up sequence
            "CONFIRM_REMINDER_HOURS": env.number("CONFIRM_REMINDER_HOURS", 24.0),
            "CLASSES_FOLLOWUP_DAYS": env.integer("CLASSES_FOLLOWUP_DAYS", 3, minimum=-1),
            "CLASS_REMINDER_DAYS": env.days("CLASS_REMINDER_DAYS", "21,7"),
            "FREQUENCY_CAP_DAYS": env.number("FREQUENCY_CAP_DAYS", 2.0),
            # Article views are counted in memory and written this often.
            "VIEW_FLUSH_SECONDS": env.number("VIEW_FLUSH_SECONDS", 5.0),
            # Signup
            "CONFIRMATION_WINDOW_SECONDS": env.integer(
                "CONFIRMATION_WINDOW_SECONDS", 3600, minimum=0
            ),
            "CONFIRMATION_MAX_AGE_SECONDS": env.integer(
                "CONFIRMATION_MAX_AGE_SECONDS", 7 * 24 * 3600, minimum=1
            ),
            "FORM_MIN_SECONDS": env.number("FORM_MIN_SECONDS", 2.0),
            # Sites that may embed the signup form (iframe) and post to it.
            "EMBED_ALLOWED_ORIGINS": env.origins("EMBED_ALLOWED_ORIGINS"),
            "SIGNUP_RATE_LIMIT": env.rate_limit("SIGNUP_RATE_LIMIT", "10 per minute"),
            "LOGIN_RATE_LIMIT": env.rate_limit("LOGIN_RATE_LIMIT", "5 per minute"),
            # Staff accounts: reset requests per address and per IP, how long
            # an invitation works, and who must use two-factor sign-in.
            "PASSWORD_RESET_RATE_LIMIT": env.rate_limit("PASSWORD_RESET_RATE_LIMIT", "5 per hour"),
            "STAFF_INVITATION_HOURS": env.integer(
                "STAFF_INVITATION_HOURS", 72, minimum=1, maximum=24 * 30
            ),
            "STAFF_REQUIRE_2FA": env.choice("STAFF_REQUIRE_2FA", "none", ("none", "admin", "all")),
            # Requests per API token (subscribe also counts against SIGNUP_RATE_LIMIT).
            "API_RATE_LIMIT": env.rate_limit("API_RATE_LIMIT", "120 per minute"),
            "RATELIMIT_STORAGE_URI": env.text("RATELIMIT_STORAGE_URI", "memory://"),
            "RATELIMIT_HEADERS_ENABLED": True,
            "TRUSTED_PROXY_COUNT": env.integer("TRUSTED_PROXY_COUNT", 0, minimum=0),
            # Host names answered besides SITE_URL's (app.py adds that one).
            "TRUSTED_HOSTS": env.hosts("TRUSTED_HOSTS"),
            # Forms stay valid while someone reads a long article.
            "WTF_CSRF_TIME_LIMIT": env.integer("WTF_CSRF_TIME_LIMIT", 24 * 3600, minimum=1),
            "MAX_CONTENT_LENGTH": env.integer("MAX_CONTENT_LENGTH", 64 * 1024, minimum=1),
            # GET /metrics (Prometheus): these addresses, or the bearer token.
            "METRICS_ALLOWED_IPS": env.networks("METRICS_ALLOWED_IPS", "127.0.0.1/32,::1/128"),
            "METRICS_TOKEN": env.secret("METRICS_TOKEN", min_length=16),
            # The CSV import upload only (web.access): a million leads is about 60 MB.
            "IMPORT_MAX_BYTES": env.integer("IMPORT_MAX_BYTES", 100 * 1024 * 1024, minimum=1),
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Lax",
        }
