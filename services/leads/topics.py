"""What a lead can ask to hear about. Slugs are stored; labels are shown."""

from __future__ import annotations

CSPO_CLASSES = "cspo-classes"
NEWSLETTER = "newsletter"

TOPICS: dict[str, str] = {
    CSPO_CLASSES: "CSPO class announcements",
    NEWSLETTER: "Newsletter",
}


def label(slug: str) -> str:
    return TOPICS.get(slug, slug)


def clean(slugs: list[str]) -> list[str]:
    """Known topic slugs in canonical order, unknown ones dropped."""
    wanted = set(slugs)
    return [slug for slug in TOPICS if slug in wanted]
