"""Article views, counted on the server: no cookies, no known bots.

Counts are buffered per process and written every FLUSH_SECONDS as one upsert
per (article, day), so reading an article costs no database write.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from datetime import date
from functools import lru_cache

from extensions import db
from models import PageViewDaily
from services import clock, upsert

FLUSH_SECONDS = 5.0
_BOTS = re.compile(
    r"bot|crawl|spider|slurp|preview|fetch|monitor|curl|wget|python-|httpx|go-http|java/|"
    r"headless|lighthouse|pingdom|facebookexternalhit|embedly|scanner|"
    # Mail security gateways that open every link of a mail.
    r"barracuda|mimecast|proofpoint|safelinks|forcepoint|trendmicro|symantec|"
    r"bingpreview|google-safety|appengine-google",
    re.I,
)


@lru_cache(maxsize=512)
def is_bot(user_agent: str | None) -> bool:
    # Cached: most visits come from a few browsers, and the pattern is long.
    return not user_agent or bool(_BOTS.search(user_agent))


class ViewCounter:
    def __init__(self, flush_seconds: float = FLUSH_SECONDS):
        self.flush_seconds = flush_seconds
        self._pending: Counter[tuple[str, date]] = Counter()
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()

    def count(self, slug: str, user_agent: str | None) -> bool:
        """Count a view in memory; True when the counts are due to be written
        (the caller flushes, inside an app context)."""
        if is_bot(user_agent):
            return False
        with self._lock:
            self._pending[(slug, clock.now().date())] += 1
            return time.monotonic() - self._last_flush >= self.flush_seconds

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, Counter()
            self._last_flush = time.monotonic()
        if not pending:
            return
        try:
            for (slug, day), n in pending.items():
                upsert.insert_or_add(PageViewDaily, {"slug": slug, "day": day}, {"views": n})
            db.session.commit()
        except Exception:
            db.session.rollback()
            with self._lock:  # keep the counts for the next try
                self._pending.update(pending)
            raise
