"""Baseline delivery: a raw smtplib loop over one connection, messages built
(and serialised) before the clock starts.

    python -m bench.baselines.smtp_loop PORT SAMPLES_DIR COUNT

SAMPLES_DIR holds *.eml mails our app composed (a welcome, an announcement):
message i is sample i % len(samples) addressed to lead{i}@example.com.
"""

import smtplib
import sys
import time
from email import message_from_bytes, policy
from pathlib import Path


def build(samples_dir: str, count: int) -> list[tuple[str, bytes]]:
    samples = [
        message_from_bytes(p.read_bytes(), policy=policy.SMTP)
        for p in sorted(Path(samples_dir).glob("*.eml"))
    ]
    out = []
    for i in range(count):
        msg = samples[i % len(samples)]
        rcpt = f"lead{i}@example.com"
        msg.replace_header("To", rcpt)
        out.append((rcpt, msg.as_bytes()))
    return out


def main() -> None:
    port, samples_dir, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    messages = build(samples_dir, count)
    start = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port) as conn:
        for rcpt, data in messages:
            conn.sendmail("hello@scrum-academy.example", [rcpt], data)
    print(f"{count} {time.monotonic() - start:.3f}")


if __name__ == "__main__":
    main()
