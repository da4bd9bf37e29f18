"""A local SMTP server (aiosmtpd) that accepts every mail and keeps only when
it arrived and on which connection. Its own process, so neither side of the
delivery benchmark shares an interpreter with it.

    python -m bench.smtp_sink PORT RESULT.json

On SIGTERM it writes {"count", "first", "last", "gaps_ms": [...]} to
RESULT.json: receipt times on the monotonic clock (shared by the processes
of the machine), and the time between consecutive mails on each connection.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self) -> None:
        self.times: list[float] = []
        self.by_session: dict[int, float] = {}
        self.gaps: list[float] = []

    async def handle_DATA(self, server, session, envelope):
        now = time.monotonic()
        self.times.append(now)
        key = id(session)
        last = self.by_session.get(key)
        if last is not None:
            self.gaps.append((now - last) * 1000)
        self.by_session[key] = now
        return "250 OK"


def main() -> None:
    port, out = int(sys.argv[1]), sys.argv[2]
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("ready", flush=True)
    done.wait()
    controller.stop()
    with open(out, "w") as fh:
        json.dump(
            {
                "count": len(sink.times),
                "first": sink.times[0] if sink.times else None,
                "last": sink.times[-1] if sink.times else None,
                "times": sink.times,
                "gaps_ms": sink.gaps,
            },
            fh,
        )


if __name__ == "__main__":
    main()
