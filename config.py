"""Configuration read from the environment.

The defaults are the embedded mode: SQLite in the instance folder, mail written
as .eml files, in-memory rate limits. Every setting is an environment variable
of the same name (a `.env` file is read when present).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit


def _bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def _float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def _origins(name: str) -> list[str]:
    """Comma-separated origins (scheme://host[:port]), checked at start-up."""
    out = []
    for item in os.environ.get(name, "").split(","):
        item = item.strip().rstrip("/").lower()
        if not item:
            continue
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ValueError(f"{name}: {item!r} is not an origin such as https://partner.example")
        out.append(item)
    return out


def _normalise_database_url(url: str) -> str:
    # Heroku-style URLs say postgres://; SQLAlchemy wants a driver name.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


class Config:
    """Settings with their defaults; `from_env` reads the environment."""

    @classmethod
    def from_env(cls, instance_path: str) -> dict:
        instance = Path(instance_path)
        database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{instance / 'leads.sqlite3'}"
        # Links in mail point at this server unless told otherwise (PORT included).
        default_site = f"http://127.0.0.1:{os.environ.get('PORT') or 5000}"
        site_url = (os.environ.get("SITE_URL") or default_site).rstrip("/")
        return {
            "SECRET_KEY": os.environ.get("SECRET_KEY"),
            "SECRET_KEY_FALLBACKS": [
                k for k in os.environ.get("SECRET_KEY_FALLBACKS", "").split(",") if k
            ],
            "SQLALCHEMY_DATABASE_URI": _normalise_database_url(database_url),
            "SITE_URL": site_url,
            "SITE_NAME": os.environ.get("SITE_NAME", "Scrum Academy"),
            "COMPANY_POSTAL_ADDRESS": os.environ.get(
                "COMPANY_POSTAL_ADDRESS", "Scrum Academy, 1 Example Street, 10115 Berlin, Germany"
            ),
            "CONTENT_DIR": os.environ.get(
                "CONTENT_DIR", str(Path(__file__).resolve().parent / "content")
            ),
            # Mail
            "MAIL_BACKEND": os.environ.get("MAIL_BACKEND", "file"),
            "MAIL_FILE_DIR": os.environ.get("MAIL_FILE_DIR", str(instance / "mail")),
            "MAIL_SERVER": os.environ.get("MAIL_SERVER", "localhost"),
            "MAIL_PORT": _int("MAIL_PORT", 25),
            "MAIL_USE_TLS": _bool("MAIL_USE_TLS"),
            "MAIL_USE_SSL": _bool("MAIL_USE_SSL"),
            "MAIL_USERNAME": os.environ.get("MAIL_USERNAME"),
            "MAIL_PASSWORD": os.environ.get("MAIL_PASSWORD"),
            "MAIL_DEFAULT_SENDER": os.environ.get(
                "MAIL_DEFAULT_SENDER", "Scrum Academy <hello@scrum-academy.example>"
            ),
            "MAIL_TIMEOUT": _float("MAIL_TIMEOUT", 30.0),
            "MAIL_MAX_ATTEMPTS": _int("MAIL_MAX_ATTEMPTS", 8),
            "MAIL_UNSUBSCRIBE_MAILTO": os.environ.get("MAIL_UNSUBSCRIBE_MAILTO"),
            "MAIL_CHECK_DELIVERABILITY": _bool("MAIL_CHECK_DELIVERABILITY"),
            # Worker
            "WORKER_BATCH_SIZE": _int("WORKER_BATCH_SIZE", 50),
            "WORKER_LEASE_SECONDS": _int("WORKER_LEASE_SECONDS", 120),
            "WORKER_POLL_SECONDS": _float("WORKER_POLL_SECONDS", 1.0),
            "WORKER_BACKOFF_BASE_SECONDS": _float("WORKER_BACKOFF_BASE_SECONDS", 60.0),
            "WORKER_CONNECTIONS": _int("WORKER_CONNECTIONS", 1),
            "WORKER_RATE_PER_SECOND": _float("WORKER_RATE_PER_SECOND", 0.0),
            # Follow-up sequence
            "CONFIRM_REMINDER_HOURS": _float("CONFIRM_REMINDER_HOURS", 24.0),
            "CLASSES_FOLLOWUP_DAYS": _int("CLASSES_FOLLOWUP_DAYS", 3),
            "CLASS_REMINDER_DAYS": os.environ.get("CLASS_REMINDER_DAYS", "21,7"),
            "FREQUENCY_CAP_DAYS": _float("FREQUENCY_CAP_DAYS", 2.0),
            "WORKER_PLAN_SECONDS": _float("WORKER_PLAN_SECONDS", 15.0),
            "VIEW_FLUSH_SECONDS": _float("VIEW_FLUSH_SECONDS", 5.0),
            # Signup
            "CONFIRMATION_WINDOW_SECONDS": _int("CONFIRMATION_WINDOW_SECONDS", 3600),
            "CONFIRMATION_MAX_AGE_SECONDS": _int("CONFIRMATION_MAX_AGE_SECONDS", 7 * 24 * 3600),
            "FORM_MIN_SECONDS": _float("FORM_MIN_SECONDS", 2.0),
            # Sites that may embed the signup form (iframe) and post to it.
            "EMBED_ALLOWED_ORIGINS": _origins("EMBED_ALLOWED_ORIGINS"),
            "SIGNUP_RATE_LIMIT": os.environ.get("SIGNUP_RATE_LIMIT", "10 per minute"),
            "LOGIN_RATE_LIMIT": os.environ.get("LOGIN_RATE_LIMIT", "5 per minute"),
            "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
            "RATELIMIT_HEADERS_ENABLED": True,
            "TRUSTED_PROXY_COUNT": _int("TRUSTED_PROXY_COUNT", 0),
            # Forms stay valid while someone reads a long article.
            "WTF_CSRF_TIME_LIMIT": _int("WTF_CSRF_TIME_LIMIT", 24 * 3600),
            "MAX_CONTENT_LENGTH": _int("MAX_CONTENT_LENGTH", 64 * 1024),
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Lax",
        }
