"""HTTP load generator: its own process, asyncio raw sockets, loopback only.

Reads a JSON spec on stdin, writes a JSON result on stdout:

    {"port": 8000, "connections": 8, "warmup": 1, "duration": 10,
     "max_requests": 200000, "timeout": 30,
     "clients": [{"method": "POST", "path": "/subscribe",
                  "headers": {"Origin": "http://127.0.0.1:8000"},
                  "body": "email=u%N%@example.com", "expect": [303],
                  "forbid_headers": ["set-cookie"], "expect_length": 12345}]}

Client i of `connections` sends clients[i % len(clients)] over and over,
one request at a time; `%N%` in path or body becomes a number unique in the
run. Keep-alive is used when the server allows it (gunicorn's sync workers
close after each response; the connection is then opened anew, for ours and
the baselines alike). Requests completing in the first `warmup` seconds are
not timed; errors are counted over the whole run. Bounded in time
(warmup + duration) and in count (max_requests).

Optional checks on every response, each failure an error of its own kind:
`forbid_headers` (e.g. no Set-Cookie for an anonymous reader) and
`expect_length` (the body's size in bytes: the same page on both sides).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

HOST = "127.0.0.1"


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.timed_ok = 0
        self.total = 0
        self.last_done = 0.0


async def _read_response(
    reader: asyncio.StreamReader, method: str
) -> tuple[int, bool, dict[str, str], int]:
    """Status, whether the server closes, headers (names lower case) and body size."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ", 2)[:2]
    code = int(status)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip().lower()
    close = headers.get("connection") == "close" or version == "HTTP/1.0"
    size = 0
    if method == "HEAD" or code in (204, 304) or code < 200:
        pass  # no body, whatever the headers say (RFC 9110, 6.4.1)
    elif "content-length" in headers:
        size = int(headers["content-length"])
        await reader.readexactly(size)
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            chunk = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(chunk + 2)
            size += chunk
            if chunk == 0:
                break
    else:
        size = len(await reader.read())  # until the server closes
        close = True
    return code, close, headers, size


def _request_bytes(c: dict, n: int) -> bytes:
    path = c["path"].replace("%N%", str(n))
    body = c.get("body", "").replace("%N%", str(n)).encode()
    headers = {
        "Host": f"{HOST}:{c['port']}",
        "User-Agent": c.get("user_agent", "bench-load"),
        **c["headers"],
    }
    if body or c["method"] == "POST":
        headers["Content-Length"] = str(len(body))
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    head = f"{c['method']} {path} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    return head.encode() + b"\r\n" + body


async def _client(spec: dict, c: dict, stats: Stats, counter: list[int], t0: float) -> None:
    port, timeout = spec["port"], spec.get("timeout", 30)
    warm_end = t0 + spec.get("warmup", 0)
    end = warm_end + spec["duration"]
    expect = set(c.get("expect", [200]))
    forbid = [h.lower() for h in c.get("forbid_headers", [])]
    length = c.get("expect_length")
    c = {**c, "port": port}
    reader = writer = None
    while time.monotonic() < end and counter[0] < spec["max_requests"]:
        counter[0] += 1
        n = counter[0]
        data = _request_bytes(c, n)
        start = time.monotonic()
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(HOST, port), timeout
                )
            writer.write(data)
            status, close, headers, size = await asyncio.wait_for(
                _read_response(reader, c["method"]), timeout
            )
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            stats.errors[type(exc).__name__] += 1
            stats.total += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        done = time.monotonic()
        stats.total += 1
        stats.statuses[status] += 1
        failed = status not in expect
        if failed:
            stats.errors[f"status {status}"] += 1
        for name in forbid:
            if name in headers:
                stats.errors[f"header {name}"] += 1
                failed = True
        if length is not None and size != length and not failed:
            stats.errors[f"{size} bytes"] += 1
            failed = True
        if not failed and warm_end <= done <= end:
            stats.timed_ok += 1
            stats.latencies.append(done - start)
            stats.last_done = max(stats.last_done, done)
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def main(spec: dict) -> dict:
    stats = Stats()
    counter = [spec.get("start_n", 0)]
    t0 = time.monotonic()
    warm_end = t0 + spec.get("warmup", 0)
    clients = spec["clients"]
    await asyncio.gather(
        *(
            _client(spec, clients[i % len(clients)], stats, counter, t0)
            for i in range(spec["connections"])
        )
    )
    lat = sorted(stats.latencies)

    def pct(p: float) -> float | None:
        if not lat:
            return None
        return lat[min(len(lat) - 1, round(p / 100 * (len(lat) - 1)))] * 1000

    return {
        "ok": stats.timed_ok,
        # Over the timed window, or up to the last response when the count
        # bound ended the run early.
        "rps": stats.timed_ok / max(stats.last_done - warm_end, 1e-9) if stats.timed_ok else 0.0,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "total": stats.total,
        "statuses": {str(k): v for k, v in stats.statuses.items()},
        "errors": sum(stats.errors.values()),
        "error_kinds": dict(stats.errors),
        "last_n": counter[0],
    }


if __name__ == "__main__":
    result = asyncio.run(main(json.load(sys.stdin)))
    json.dump(result, sys.stdout)
