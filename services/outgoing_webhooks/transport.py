"""One signed POST to a checked address: the connection goes to the IP
that targets.resolve approved, while the Host header and the TLS server
name (and certificate check) stay the URL's host. No redirects, no
retries here (the queue retries), timeouts, and only the first bytes of
the answer are read."""

from __future__ import annotations

import time
from dataclasses import dataclass

import urllib3

from services.outgoing_webhooks.targets import IPAddress, Target

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "leads-webhooks/1"


@dataclass
class Answer:
    status: int | None  # None: no answer (connection refused, timeout...)
    duration_ms: int
    error: str | None  # why it did not count as delivered; None on 2xx

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post(target: Target, ip: IPAddress, headers: dict[str, str], body: bytes, timeout: float):
    started = time.monotonic()
    options = {
        "timeout": urllib3.Timeout(connect=timeout, read=timeout),
        "retries": False,
        "maxsize": 1,
    }
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            str(ip),
            target.port,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            **options,
        )
    else:
        pool = urllib3.HTTPConnectionPool(str(ip), target.port, **options)
    headers = {
        **headers,
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    try:
        with pool:
            response = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=False,
            )
            try:
                text = response.read(MAX_RESPONSE_BYTES)
            finally:
                response.close()
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return Answer(None, _ms(started), f"{type(exc).__name__}: {exc}"[:500])
    answer = Answer(response.status, _ms(started), None)
    if not answer.delivered:
        snippet = text[:200].decode("utf-8", "replace")
        answer.error = f"HTTP {response.status}: {snippet}".strip()[:500]
    return answer


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
