"""Where a webhook may go (SSRF): http(s) URLs whose host resolves only to
public addresses, checked when registered and again, on the address that
will be connected to, right before each delivery (no DNS rebinding)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_LENGTH = 2000


class TargetError(ValueError):
    """A URL that is not a webhook target; the message says why."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written, lower case, no brackets: the TLS server name
    port: int
    path: str  # path and query string
    host_header: str


def parse(url: str) -> Target:
    url = (url or "").strip()
    if len(url) > MAX_URL_LENGTH:
        raise TargetError(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetError("This is not a URL.") from None
    if parts.scheme not in ("https", "http"):
        raise TargetError("The URL must start with https:// (or http://).")
    if parts.username is not None or parts.password is not None:
        raise TargetError("The URL must not carry a user name or password.")
    host = (parts.hostname or "").rstrip(".")
    if not host or any(c.isspace() or ord(c) < 32 for c in url):
        raise TargetError("The URL has no host name.")
    default = 443 if parts.scheme == "https" else 80
    port = port or default
    shown = f"[{host}]" if ":" in host else host
    return Target(
        scheme=parts.scheme,
        host=host,
        port=port,
        path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        host_header=shown if port == default else f"{shown}:{port}",
    )


# The kinds of address no webhook goes to, the most telling first (127.0.0.1
# is private and loopback: "loopback" says more).
_CATEGORIES = (
    ("unspecified", "is_unspecified"),
    ("loopback", "is_loopback"),
    ("link-local", "is_link_local"),
    ("multicast", "is_multicast"),
    ("private", "is_private"),
    ("reserved", "is_reserved"),
)


def category(ip: IPAddress) -> str | None:
    """Why the address is not reachable on the internet at large (loopback,
    private, link-local...), None when it is; an IPv6 address that carries
    an IPv4 one (mapped, 6to4, Teredo) is judged by that one too."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and (inner := category(embedded)) is not None:
            return f"{inner} (as {embedded})"
    for name, test in _CATEGORIES:
        if getattr(ip, test):
            return name
    return None if ip.is_global else "non-public (not globally routable)"


def is_public(ip: IPAddress) -> bool:
    return category(ip) is None


def resolve(target: Target, allow_private: bool) -> IPAddress:
    """The address to connect to. Every address the name resolves to must
    be public (unless allowed): one private among them is refused, so a
    client library's own choice could never pick it."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetError(f"{target.host} does not resolve: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if not addresses:
        raise TargetError(f"{target.host} does not resolve")
    if not allow_private:
        for ip in addresses:
            if (why := category(ip)) is not None:
                raise TargetError(
                    f"{target.host} resolves to {ip}, a {why} address: refused. "
                    "On a trusted network, set WEBHOOK_ALLOW_PRIVATE_TARGETS=1 to allow it."
                )
    return addresses[0]


def check(url: str, allow_private: bool) -> Target:
    """A URL fit to register; TargetError with the reason otherwise."""
    target = parse(url)
    resolve(target, allow_private)
    return target
