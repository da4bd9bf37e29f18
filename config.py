"""Configuration read from the environment.

The defaults are the embedded mode: SQLite in the instance folder, mail written
as .eml files, in-memory rate limits. Every setting is an environment variable
of the same name (a `.env` file is read when present). Each is parsed and
checked here, at start-up: a bad value stops the app with a ConfigError that
names the setting and the value, rather than failing later in a request or in
the worker.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import click
from limits import parse_many
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

BASE_DIR = Path(__file__).resolve().parent
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAIL_BACKENDS = ("file", "smtp", "console")
# Host names (letters, digits, hyphens; ASCII: an IDN goes in its xn-- form).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# One label or more: a host (localhost too), a bounce domain, a DKIM selector.
_HOST = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*", re.I)
# Two labels or more: a domain that publishes DNS records (DKIM's d=).
_DOMAIN = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+", re.I)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# The VERP tag follows the bounce mailbox after this character; the tag is
# at most 31 characters (an outbox id and a 10-character signature), so the
# mailbox name is kept to 32 and the whole local part within RFC 5321's 64.
VERP_SEPARATOR = "+"
BOUNCE_LOCAL_MAX = 32
_ATOM = r"[A-Za-z0-9_-]+"
_SNS_TOPIC_ARN = re.compile(r"arn:aws(-cn|-us-gov)?:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}")
_BOUNCE_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")


class ConfigError(click.ClickException, ValueError):
    """A setting with a bad value. Being a ClickException, the flask CLI
    (`flask db upgrade`, `flask serve`, so `make run`) prints it as one line,
    `Error: ...`, and exits 1 instead of showing a traceback."""


class _Environment:
    """Typed reads of settings from a mapping of strings (os.environ)."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ

    def text(self, name: str, default: str | None = None) -> str | None:
        return self.environ.get(name, default)

    def _value(self, name: str) -> str | None:
        """The stripped value, or None when unset or blank (the default applies)."""
        value = self.environ.get(name, "").strip()
        return value or None

    def integer(
        self, name: str, default: int, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        raw = self._value(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = None
        too_low = value is not None and minimum is not None and value < minimum
        too_high = value is not None and maximum is not None and value > maximum
        if value is None or too_low or too_high:
            if minimum is not None and maximum is not None:
                expected = f"a whole number from {minimum} to {maximum}"
            elif minimum is not None:
                expected = f"a whole number of at least {minimum}"
            else:
                expected = f"a whole number such as {default}"
            raise ConfigError(f'{name}: "{raw}" is not {expected}')
        return value

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        raw = self._value(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < minimum:
            raise ConfigError(
                f'{name}: "{raw}" is not a number of at least {minimum:g} such as {default:g}'
            )
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        raw = self._value(name)
        if raw is None:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ConfigError(f'{name}: "{raw}" is not one of true, false, yes, no, on, off, 1, 0')

    def choice(self, name: str, default: str, choices: tuple[str, ...], upper: bool = False) -> str:
        raw = self._value(name)
        if raw is None:
            return default
        value = raw.upper() if upper else raw.lower()
        if value not in choices:
            raise ConfigError(f'{name}: "{raw}" is not one of {", ".join(choices)}')
        return value

    def days(self, name: str, default: str) -> list[int]:
        """Comma-separated whole days, 1 or more: largest first, each once.
        Blank means none."""
        raw = self.environ.get(name, default)
        items = [item.strip() for item in raw.split(",") if item.strip()]
        if not all(item.isdigit() and int(item) >= 1 for item in items):
            raise ConfigError(f'{name}: "{raw}" is not a list of whole days such as {default}')
        return sorted({int(item) for item in items}, reverse=True)

    def items(self, name: str) -> list[str]:
        return [item.strip() for item in self.environ.get(name, "").split(",") if item.strip()]

    def origins(self, name: str) -> list[str]:
        """Comma-separated origins (scheme://host[:port]), lower-cased."""
        out = []
        for item in self.items(name):
            origin = item.rstrip("/").lower()
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
                raise ConfigError(
                    f'{name}: "{item}" is not an origin such as https://partner.example'
                )
            out.append(origin)
        return out

    def hosts(self, name: str) -> list[str]:
        """Comma-separated host names, without scheme or port; a leading dot
        takes in every subdomain (Werkzeug's rule). Lower-cased, IDNA-encoded."""
        out = []
        for item in self.items(name):
            dot, name_part = (".", item[1:]) if item.startswith(".") else ("", item)
            try:
                host = name_part.lower().encode("idna").decode("ascii")
            except UnicodeError:
                host = ""
            if not _HOST.fullmatch(host):
                raise ConfigError(
                    f'{name}: "{item}" is not a host name such as www.example.com '
                    "(or .example.com for every subdomain)"
                )
            out.append(dot + host)
        return out

    def site_url(self, name: str, default: str) -> str:
        value = (self._value(name) or default).rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f'{name}: "{value}" is not an absolute URL such as https://www.example.com'
            )
        return value

    def rate_limit(self, name: str, default: str) -> str:
        value = self._value(name) or default
        try:
            parse_many(value)
        except ValueError:
            raise ConfigError(f'{name}: "{value}" is not a rate limit such as {default}') from None
        return value

    def directory(self, name: str, default: Path) -> str:
        value = self._value(name) or str(default)
        if not Path(value).is_dir():
            raise ConfigError(f'{name}: "{value}" is not a directory')
        return value

    def webhooks(self) -> dict:
        """The ESP webhook secrets; Postmark's user and password go together."""
        key = self._value("MAILGUN_WEBHOOK_SIGNING_KEY")
        user, password = (
            self._value("POSTMARK_WEBHOOK_USER"),
            self._value("POSTMARK_WEBHOOK_PASSWORD"),
        )
        if key is not None and len(key) < 16:
            raise ConfigError(
                "MAILGUN_WEBHOOK_SIGNING_KEY: too short to be Mailgun's HTTP webhook "
                "signing key (copy it from Sending > Webhooks)"
            )
        if (user is None) != (password is None):
            raise ConfigError("POSTMARK_WEBHOOK_USER and POSTMARK_WEBHOOK_PASSWORD go together")
        if user is not None and ":" in user:
            raise ConfigError("POSTMARK_WEBHOOK_USER: a basic-auth user name has no colon")
        if password is not None and len(password) < 16:
            raise ConfigError(
                "POSTMARK_WEBHOOK_PASSWORD: use a random password of 16 characters or more"
            )
        arns = self.items("SES_SNS_TOPIC_ARNS")
        for arn in arns:
            if not _SNS_TOPIC_ARN.fullmatch(arn):
                raise ConfigError(
                    f'SES_SNS_TOPIC_ARNS: "{arn}" is not a topic ARN such as '
                    "arn:aws:sns:eu-west-1:123456789012:ses-bounces"
                )
        return {
            "SES_SNS_TOPIC_ARNS": arns,
            "MAILGUN_WEBHOOK_SIGNING_KEY": key,
            "POSTMARK_WEBHOOK_USER": user,
            "POSTMARK_WEBHOOK_PASSWORD": password,
        }

    def bounce_address(self) -> str | None:
        """The VERP base address, local@domain in lower case (MTAs may lower
        a local part), from MAIL_BOUNCE_ADDRESS or BOUNCE_LOCAL plus
        BOUNCE_DOMAIN; None when neither is set."""
        full = self._value("MAIL_BOUNCE_ADDRESS")
        local, domain = self._value("BOUNCE_LOCAL"), self._value("BOUNCE_DOMAIN")
        if full and (local or domain):
            raise ConfigError(
                "MAIL_BOUNCE_ADDRESS and BOUNCE_LOCAL/BOUNCE_DOMAIN are both set: "
                "set one or the other"
            )
        if full:
            local, _, domain = full.rpartition("@")
            # "bounces+@example.com" marks where the tag goes: the same address.
            local = local.removesuffix(VERP_SEPARATOR)
            if not (_is_bounce_local(local) and _HOST.fullmatch(domain)):
                raise ConfigError(
                    f'MAIL_BOUNCE_ADDRESS: "{full}" is not an address such as '
                    f"bounces@bounce.example.com (a mailbox name of up to {BOUNCE_LOCAL_MAX} "
                    "letters, digits, dots, hyphens or underscores)"
                )
        elif local or domain:
            if not (local and domain):
                raise ConfigError("BOUNCE_LOCAL and BOUNCE_DOMAIN go together: set both")
            if not _is_bounce_local(local):
                raise ConfigError(
                    f'BOUNCE_LOCAL: "{local}" is not a mailbox name such as bounces (up to '
                    f"{BOUNCE_LOCAL_MAX} letters, digits, dots, hyphens or underscores)"
                )
            if not _HOST.fullmatch(domain):
                raise ConfigError(
                    f'BOUNCE_DOMAIN: "{domain}" is not a domain such as bounce.example.com'
                )
        else:
            return None
        return f"{local.lower()}@{domain.lower()}"

    def bounce_imap(self) -> dict:
        """BOUNCE_IMAP_*: the mailbox `flask bounces fetch` reads (TLS always
        verified; BOUNCE_IMAP_CA_FILE adds a CA to trust). Host blank: none."""
        host, user = self._value("BOUNCE_IMAP_HOST"), self._value("BOUNCE_IMAP_USER")
        password, ca_file = self.text("BOUNCE_IMAP_PASSWORD"), self._value("BOUNCE_IMAP_CA_FILE")
        if host and not _HOST.fullmatch(host):
            raise ConfigError(f'BOUNCE_IMAP_HOST: "{host}" is not a host such as imap.example.com')
        if host and not (user and password):
            raise ConfigError("BOUNCE_IMAP_HOST is set: set BOUNCE_IMAP_USER and _PASSWORD too")
        if ca_file and not Path(ca_file).is_file():
            raise ConfigError(f'BOUNCE_IMAP_CA_FILE: "{ca_file}" is not a file (PEM certificates)')
        return {
            "BOUNCE_IMAP_HOST": host,
            "BOUNCE_IMAP_PORT": self.integer("BOUNCE_IMAP_PORT", 993, minimum=1, maximum=65535),
            "BOUNCE_IMAP_USER": user,
            "BOUNCE_IMAP_PASSWORD": password,
            "BOUNCE_IMAP_FOLDER": self._value("BOUNCE_IMAP_FOLDER") or "INBOX",
            "BOUNCE_IMAP_CA_FILE": ca_file,
            "BOUNCE_IMAP_AFTER": self.choice("BOUNCE_IMAP_AFTER", "delete", ("delete", "flag")),
        }

    def database_url(self, name: str, default: str) -> str:
        url = self._value(name) or default
        try:
            make_url(url)
        except (ArgumentError, ValueError):
            # The value is left out: it may hold a password.
            raise ConfigError(
                f"{name} is not a database URL such as postgresql://user:password@host/dbname"
            ) from None
        return _normalise_database_url(url)

    def dkim(self) -> dict:
        """DKIM_DOMAIN, DKIM_SELECTOR, DKIM_PRIVATE_KEY_FILE: all three (mail is
        signed) or none. The key is read here once to check it; the app reads it
        again for signing (services.mail.dkim.init_app)."""
        names = ("DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_PRIVATE_KEY_FILE")
        values = {name: self._value(name) for name in names}
        missing = [name for name in names if values[name] is None]
        if len(missing) == len(names):
            return values
        if missing:
            raise ConfigError(
                f"{', '.join(missing)} not set: DKIM_DOMAIN, DKIM_SELECTOR and "
                "DKIM_PRIVATE_KEY_FILE go together (all three to sign mail, or none)"
            )
        domain = values["DKIM_DOMAIN"].lower().rstrip(".")
        if not _DOMAIN.fullmatch(domain):
            raise ConfigError(
                f'DKIM_DOMAIN: "{values["DKIM_DOMAIN"]}" is not a domain such as example.com'
            )
        selector = values["DKIM_SELECTOR"].lower()
        if not _HOST.fullmatch(selector):
            raise ConfigError(
                f'DKIM_SELECTOR: "{values["DKIM_SELECTOR"]}" is not a selector such as s2026 '
                "(letters, digits and hyphens)"
            )
        from services.mail.dkim import DkimKeyError, read_private_key

        key_file = values["DKIM_PRIVATE_KEY_FILE"]
        try:
            read_private_key(key_file)
        except DkimKeyError as exc:
            hint = ""
            if not Path(key_file).exists():
                # The app (and so the flask CLI) does not start with the settings
                # pointing at a missing key: the key is made first.
                hint = (
                    " (make it with the three DKIM settings blank: flask dkim keygen "
                    f"--selector {selector} --domain {domain} --output {key_file})"
                )
            raise ConfigError(f'DKIM_PRIVATE_KEY_FILE: "{key_file}" {exc}{hint}') from None
        return {"DKIM_DOMAIN": domain, "DKIM_SELECTOR": selector, "DKIM_PRIVATE_KEY_FILE": key_file}


def _is_bounce_local(local: str) -> bool:
    return len(local) <= BOUNCE_LOCAL_MAX and bool(_BOUNCE_LOCAL.fullmatch(local))


def _normalise_database_url(url: str) -> str:
    # Heroku-style URLs say postgres://; SQLAlchemy wants a driver name.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


class Config:
    """Settings with their defaults; `from_env` reads and checks the environment."""

    @classmethod
    def from_env(cls, instance_path: str, environ: Mapping[str, str] | None = None) -> dict:
        """The settings as a dict for app.config; ConfigError on a bad value."""
        env = _Environment(os.environ if environ is None else environ)
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
            **env.dkim(),
            # Bounces: each mail's envelope sender is this address with a
            # signed tag (VERP); None keeps the From address.
            "MAIL_BOUNCE_ADDRESS": env.bounce_address(),
            "BOUNCE_SOFT_LIMIT": env.integer("BOUNCE_SOFT_LIMIT", 3, minimum=1),
            "BOUNCE_SOFT_DAYS": env.integer("BOUNCE_SOFT_DAYS", 30, minimum=1),
            **env.bounce_imap(),
            # ESP webhooks (POST /webhooks/<provider>): unset refuses them.
            **env.webhooks(),
            "WEBHOOK_RATE_LIMIT": env.rate_limit("WEBHOOK_RATE_LIMIT", "600 per minute"),
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
            "RATELIMIT_STORAGE_URI": env.text("RATELIMIT_STORAGE_URI", "memory://"),
            "RATELIMIT_HEADERS_ENABLED": True,
            "TRUSTED_PROXY_COUNT": env.integer("TRUSTED_PROXY_COUNT", 0, minimum=0),
            # Host names answered besides SITE_URL's (app.py adds that one).
            "TRUSTED_HOSTS": env.hosts("TRUSTED_HOSTS"),
            # Forms stay valid while someone reads a long article.
            "WTF_CSRF_TIME_LIMIT": env.integer("WTF_CSRF_TIME_LIMIT", 24 * 3600, minimum=1),
            "MAX_CONTENT_LENGTH": env.integer("MAX_CONTENT_LENGTH", 64 * 1024, minimum=1),
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Lax",
        }
