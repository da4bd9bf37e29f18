"""The previous release beside ours, for the delivery benchmark's second
baseline: a git worktree of PREVIOUS_RELEASE made for the run and removed
after it, whose `flask worker` runs from its own tree with this run's Python
(the same venv), against the same database and SMTP sink as ours.

PREVIOUS_RELEASE is today's main (96b54a3); `BENCH_PREVIOUS_RELEASE=<commit>`
measures against another one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from bench import common

PREVIOUS_RELEASE = os.environ.get("BENCH_PREVIOUS_RELEASE", "96b54a3")


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=common.ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


@contextlib.contextmanager
def worktree(ref: str = PREVIOUS_RELEASE) -> Iterator[tuple[Path, str]]:
    """(the checked-out tree, its short commit), removed on exit."""
    scratch = Path(tempfile.mkdtemp(prefix="bench-previous-"))
    tree = scratch / "tree"
    _git("worktree", "add", "--detach", "--quiet", str(tree), ref)
    try:
        yield tree, _git("-C", str(tree), "rev-parse", "--short", "HEAD")
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _git("worktree", "remove", "--force", str(tree))
        shutil.rmtree(scratch, ignore_errors=True)
        _git("worktree", "prune")


def start_worker(root: Path, env: Mapping[str, str], log_path: Path) -> subprocess.Popen:
    """`flask --app app worker --once` from the tree at `root`, output to log_path."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [common.PYTHON, "-m", "flask", "--app", "app", "worker", "--once"],
            cwd=root,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
