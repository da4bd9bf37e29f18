"""Articles: Markdown files with YAML front matter, rendered once and cached."""

from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import yaml
from markdown_it import MarkdownIt
from markupsafe import Markup

WORDS_PER_MINUTE = 230
log = logging.getLogger("leads.content")
TRAINING_PATH = "/certified-scrum-product-owner-cspo-training"
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# A path under static/ (no "..", no leading slash) or an absolute https URL.
_IMAGE = re.compile(r"^(?:https://\S+|(?!/)(?!.*\.\.)[\w./-]+\.(?:png|jpe?g|webp|gif))$")
# A dangling link this close to an article's slug is a typo of it, not a
# page still to be written (`flask content check` fails on those).
MISSPELT_DISTANCE = 2


class ContentError(ValueError):
    pass


@dataclass(frozen=True)
class Article:
    slug: str
    title: str
    published: date | None
    description: str
    html_intro: Markup  # before the inline signup form
    html_rest: Markup  # after it
    reading_minutes: int
    internal_links: tuple[str, ...] = field(default=())
    modified: datetime | None = None  # the file's, for Last-Modified
    updated: date | None = None  # front matter `updated:`, for the sitemap and feed
    image: str | None = None  # front matter `image:`: a file under static/ or an https URL
    image_alt: str = ""

    @property
    def path(self) -> str:
        return f"/{self.slug}"

    @property
    def changed(self) -> datetime | None:
        """When the text last changed, as the writer says (updated, else
        date), else the file's time: the sitemap's lastmod, the feed's updated."""
        day = self.updated or self.published
        if day is not None:
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        return self.modified


def _markdown() -> MarkdownIt:
    # Raw HTML in articles is off: the content is data, the templates are code.
    return MarkdownIt("commonmark", {"html": False, "typographer": True}).enable(
        ["table", "strikethrough", "replacements", "smartquotes"]
    )


def _inline_text(tok) -> str:
    """The words of an inline token: markup dropped, line breaks as spaces."""
    parts = []
    for child in tok.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return " ".join("".join(parts).split())


def _plain_text(tokens) -> str:
    return " ".join(_inline_text(tok) for tok in tokens if tok.type == "inline")


def _split_index(tokens) -> int:
    """Index of the top-level block where the inline form goes: the heading
    closest to a third of the text, so the form never cuts a section in two."""
    total = sum(len(t.content) for t in tokens if t.type == "inline")
    target = total / 3
    seen = 0
    best, best_gap = len(tokens), math.inf
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.level == 0 and i > 0:
            gap = abs(seen - target)
            if gap < best_gap:
                best, best_gap = i, gap
        if tok.type == "inline":
            seen += len(tok.content)
    if best == len(tokens):  # no heading: after the paragraph nearest a third
        seen = 0
        for i, tok in enumerate(tokens):
            if tok.type == "inline":
                seen += len(tok.content)
            if tok.type == "paragraph_close" and tok.level == 0 and seen >= target:
                return i + 1
    return best


def _internal_links(tokens) -> tuple[str, ...]:
    links = []
    for tok in tokens:
        for child in tok.children or []:
            if child.type == "link_open":
                href = child.attrGet("href") or ""
                if href.startswith("/") and not href.startswith("//"):
                    links.append(href.split("#")[0].split("?")[0])
    return tuple(dict.fromkeys(links))


def parse_article(path: Path, md: MarkdownIt | None = None) -> Article:
    md = md or _markdown()
    raw = path.read_text(encoding="utf-8")
    match = _FRONT_MATTER.match(raw)
    if not match:
        raise ContentError(f"{path.name}: no YAML front matter")
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise ContentError(f"{path.name}: front matter is not valid YAML: {exc}") from exc
    if not isinstance(meta, dict):
        raise ContentError(f"{path.name}: front matter is not a mapping")
    body = raw[match.end() :]
    slug = str(meta.get("slug") or path.stem)
    if not _SLUG.match(slug):
        raise ContentError(f"{path.name}: slug {slug!r} is not lowercase-with-dashes")
    if not meta.get("title"):
        raise ContentError(f"{path.name}: front matter has no title")
    published = _front_matter_date(path, meta, "date")
    updated = _front_matter_date(path, meta, "updated")
    image = meta.get("image")
    if image is not None and not (isinstance(image, str) and _IMAGE.match(image)):
        raise ContentError(
            f"{path.name}: image {image!r} is not a file under static/ or an https:// URL"
        )
    env: dict = {}
    tokens = md.parse(body, env)
    text = _plain_text(tokens)
    description = str(meta.get("description") or "")
    if not description:
        # Plain words, never Markdown syntax: it lands in <meta> and link previews.
        description = next((_inline_text(t) for t in tokens if t.type == "inline"), "")
        if len(description) > 160:
            description = description[:157].rsplit(" ", 1)[0] + "…"
    cut = _split_index(tokens)
    render = md.renderer.render
    return Article(
        slug=slug,
        title=str(meta["title"]),
        published=published,
        description=description,
        html_intro=Markup(render(tokens[:cut], md.options, env)),  # noqa: S704 (html off)
        html_rest=Markup(render(tokens[cut:], md.options, env)),  # noqa: S704
        reading_minutes=max(1, math.ceil(len(text.split()) / WORDS_PER_MINUTE)),
        internal_links=_internal_links(tokens),
        modified=datetime.fromtimestamp(int(path.stat().st_mtime), UTC),
        updated=updated,
        image=image,
        image_alt=str(meta.get("image_alt") or ""),
    )


def _front_matter_date(path: Path, meta: dict, key: str) -> date | None:
    value = meta.get(key)
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value)
        except ValueError as exc:
            raise ContentError(f"{path.name}: {key} {value!r} is not YYYY-MM-DD") from exc
    if isinstance(value, datetime):
        value = value.date()
    if value is not None and not isinstance(value, date):
        raise ContentError(f"{path.name}: {key} {value!r} is not YYYY-MM-DD")
    return value


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


class ArticleStore:
    """All articles of a content folder, parsed once, and again when a file
    changes: looked for at most every `check_seconds` (every call in debug)."""

    def __init__(self, content_dir: str | os.PathLike, check_seconds: float = 2.0):
        self.content_dir = Path(content_dir)
        self.check_seconds = check_seconds
        self._next_check = 0.0
        self.version: tuple = ()
        self._articles: dict[str, Article] = {}
        self._load(self._current_stamp())

    def _current_stamp(self) -> tuple:
        return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in self.content_dir.glob("*.md")))

    def _load(self, stamp: tuple) -> None:
        md = _markdown()
        articles = {}
        for path in sorted(self.content_dir.glob("*.md")):
            article = parse_article(path, md)
            if article.slug in articles:
                raise ContentError(f"two articles share the slug {article.slug!r}")
            articles[article.slug] = article
        self._articles = articles
        self.version = stamp

    def _fresh(self) -> dict[str, Article]:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.check_seconds
            stamp = self._current_stamp()
            if stamp != self.version:
                try:
                    self._load(stamp)
                except (ContentError, OSError, UnicodeDecodeError):
                    # A file saved half-way or broken: keep serving what we had.
                    log.exception("articles in %s not reloaded", self.content_dir)
        return self._articles

    def get(self, slug: str) -> Article | None:
        return self._fresh().get(slug)

    def all(self) -> list[Article]:
        """Newest first."""
        return sorted(
            self._fresh().values(),
            key=lambda a: (a.published or date.min, a.title),
            reverse=True,
        )

    def dangling_links(self, known_paths: set[str]) -> list[tuple[str, str]]:
        """(article slug, link) for each internal link to no page we serve."""
        paths = known_paths | {a.path for a in self._fresh().values()}
        return [
            (a.slug, link)
            for a in self.all()
            for link in a.internal_links
            # Exact match: /article/ is a 404 when the article is /article.
            if link not in paths
        ]

    def misspelt_slug(self, link: str) -> str | None:
        """The article slug a dangling link is a near miss of, if any."""
        candidate = link.strip("/")
        best = min(self._fresh(), key=lambda slug: edit_distance(candidate, slug), default=None)
        if best is not None and 0 < edit_distance(candidate, best) <= MISSPELT_DISTANCE:
            return best
        return None
