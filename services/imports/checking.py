"""Where an import's addresses are checked: in this process for the first
batch, and from the second batch on in a process of its own, while this
one writes the batch before.

email-validator is about half of an import's CPU time (bench/RESULTS.md,
findings 11 and 12); on a second core, beside the writing, it costs little
wall-clock time. Only the addresses cross over: the rest of a row's checks
are cheap, and sending whole rows cost more than it saved (finding 12).

The checking process is a plain child started with
`python -m services.imports.checking`: it imports email-validator and
nothing of the app, reads a JSON list of addresses per line on stdin and
answers each line on stdout. When the import stops, or dies, its stdin
closes and it exits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from services.leads.addresses import InvalidAddress, normalise_all

# The directory holding the `services` package, for `python -m`.
_ROOT = Path(__file__).resolve().parents[2]


class CheckingStopped(RuntimeError):
    """The checking process went away part-way (killed): the import stops
    after its last whole batch and can be resumed."""


class AddressChecker:
    """Checks one batch of addresses at a time: `send` them, then `result`."""

    def __init__(self) -> None:
        self._child: subprocess.Popen | None = None
        self._sent: list[str] = []

    def __enter__(self) -> AddressChecker:
        return self

    def __exit__(self, *exc) -> None:
        if self._child is not None:
            self._child.stdin.close()  # its signal to exit
            # A batch still in flight (the import stopped part-way) is read
            # and dropped: its answer would otherwise fill the pipe and block it.
            self._child.stdout.read()
            try:
                self._child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait()
            self._child.stdout.close()
            self._child = None

    def in_parallel(self) -> None:
        """From now on, check in a process of its own (where there is a
        second core for it)."""
        if self._child is None and (os.cpu_count() or 1) > 1:
            self._child = subprocess.Popen(
                [sys.executable, "-m", __name__],
                cwd=_ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )

    def send(self, addresses: list[str]) -> None:
        """Start checking `addresses`; the previous batch's result must have
        been taken (one batch in flight: neither pipe can fill up)."""
        self._sent = addresses
        if self._child is not None:
            self._child.stdin.write(json.dumps(addresses).encode() + b"\n")
            self._child.stdin.flush()

    def result(self) -> list[str | InvalidAddress]:
        """Each address sent, normalised, or the reason it is refused."""
        if self._child is None:
            return normalise_all(self._sent)
        line = self._child.stdout.readline()
        if not line:
            raise CheckingStopped("the address-checking process stopped")
        return [InvalidAddress(error) if error else ok for ok, error in json.loads(line)]


def serve() -> None:
    """The checking process: a line of addresses in, a line of answers out."""
    # Ctrl-C in a terminal reaches the whole group: the importer decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for line in sys.stdin.buffer:
        answers = [
            [None, str(checked)] if isinstance(checked, InvalidAddress) else [checked, None]
            for checked in normalise_all(json.loads(line))
        ]
        sys.stdout.write(json.dumps(answers) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
