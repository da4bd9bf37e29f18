"""Typed, checked reads of settings from the environment: each raises a
ConfigError naming the setting and the value."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import click
from limits import parse_many
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# Host names (letters, digits, hyphens; ASCII: an IDN goes in its xn-- form).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# One label or more: a host (localhost too), a bounce domain, a DKIM selector.
HOST = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*", re.I)
# Two labels or more: a domain that publishes DNS records (DKIM's d=).
DOMAIN = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+", re.I)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(click.ClickException, ValueError):
    """A setting with a bad value. Being a ClickException, the flask CLI
    (`flask db upgrade`, `flask serve`, so `make run`) prints it as one line,
    `Error: ...`, and exits 1 instead of showing a traceback."""


class Environment:
    """Typed reads of settings from a mapping of strings (os.environ)."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ

    def text(self, name: str, default: str | None = None) -> str | None:
        return self.environ.get(name, default)

    def value(self, name: str) -> str | None:
        """The stripped value, or None when unset or blank (the default applies)."""
        value = self.environ.get(name, "").strip()
        return value or None

    def integer(
        self, name: str, default: int, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        raw = self.value(name)
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
        raw = self.value(name)
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
        raw = self.value(name)
        if raw is None:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ConfigError(f'{name}: "{raw}" is not one of true, false, yes, no, on, off, 1, 0')

    def choice(self, name: str, default: str, choices: tuple[str, ...], upper: bool = False) -> str:
        raw = self.value(name)
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
            if not HOST.fullmatch(host):
                raise ConfigError(
                    f'{name}: "{item}" is not a host name such as www.example.com '
                    "(or .example.com for every subdomain)"
                )
            out.append(dot + host)
        return out

    def networks(
        self, name: str, default: str
    ) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """Comma-separated addresses or CIDR ranges (10.0.0.0/8, ::1); blank
        means the default. A range with host bits set is refused (a typo)."""
        raw = self.value(name) or default
        out = []
        for item in (i.strip() for i in raw.split(",") if i.strip()):
            try:
                out.append(ipaddress.ip_network(item))
            except ValueError:
                raise ConfigError(
                    f'{name}: "{item}" is not an address or CIDR range such as 10.0.0.0/8'
                ) from None
        return out

    def secret(self, name: str, min_length: int) -> str | None:
        """A shared secret such as a token; None when unset. The value is
        never shown in the error."""
        value = self.value(name)
        if value is not None and len(value) < min_length:
            raise ConfigError(f"{name} is too short: use at least {min_length} characters")
        return value

    def site_url(self, name: str, default: str) -> str:
        value = (self.value(name) or default).rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f'{name}: "{value}" is not an absolute URL such as https://www.example.com'
            )
        return value

    def rate_limit(self, name: str, default: str) -> str:
        value = self.value(name) or default
        try:
            parse_many(value)
        except ValueError:
            raise ConfigError(f'{name}: "{value}" is not a rate limit such as {default}') from None
        return value

    def directory(self, name: str, default: Path) -> str:
        value = self.value(name) or str(default)
        if not Path(value).is_dir():
            raise ConfigError(f'{name}: "{value}" is not a directory')
        return value

    def database_url(self, name: str, default: str) -> str:
        url = self.value(name) or default
        try:
            make_url(url)
        except (ArgumentError, ValueError):
            # The value is left out: it may hold a password.
            raise ConfigError(
                f"{name} is not a database URL such as postgresql://user:password@host/dbname"
            ) from None
        return _normalise_database_url(url)


def _normalise_database_url(url: str) -> str:
    # Heroku-style URLs say postgres://; SQLAlchemy wants a driver name.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url
