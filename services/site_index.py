"""What search engines and feed readers read: the paths robots.txt keeps
crawlers out of, the sitemap's and the Atom feed's entries, and the JSON-LD
of an article and of the training page. Plain data; templates/seo/ and the
page templates write it out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from models import ClassStatus, TrainingClass
from services.campaigns import classes as classes_service
from services.content import TRAINING_PATH, Article

# Token pages (one person's links), staff, API and machine endpoints: never
# worth a crawl. The same pages say noindex too (web/seo.py).
DISALLOWED_PATHS = (
    "/confirm/",
    "/preferences/",
    "/unsubscribe/",
    "/subscribe/",
    "/register/",
    "/embed/",
    "/admin/",
    "/marketing/",
    "/account",
    "/api/",
    "/login",
    "/logout",
    "/webhooks/",
    "/metrics",
    "/healthz",
)


@dataclass(frozen=True)
class SitemapEntry:
    loc: str
    lastmod: datetime | None


def sitemap(site_url: str, articles: list[Article]) -> list[SitemapEntry]:
    """The home page, every article and the training page."""
    newest = max((a.changed for a in articles if a.changed), default=None)
    return [
        SitemapEntry(f"{site_url}/", newest),
        *(SitemapEntry(f"{site_url}{a.path}", a.changed) for a in articles),
        SitemapEntry(f"{site_url}{TRAINING_PATH}", classes_service.last_change()),
    ]


def feed_updated(articles: Iterable[Article]) -> datetime | None:
    return max((a.changed for a in articles if a.changed), default=None)


def article_ld(article: Article, url: str, site_name: str, site_url: str, image: dict) -> dict:
    """schema.org Article, as Google's article rich results read it."""
    data = {
        "@context": "https://schema.org",
        "@type": "Article",
        "headline": article.title,
        "description": article.description,
        "mainEntityOfPage": url,
        "url": url,
        "image": [image["url"]],
        "author": {"@type": "Organization", "name": site_name, "url": f"{site_url}/"},
        "publisher": {"@type": "Organization", "name": site_name, "url": f"{site_url}/"},
    }
    if article.published:
        data["datePublished"] = article.published.isoformat()
    if article.changed:
        data["dateModified"] = article.changed.isoformat()
    return data


def course_ld(
    classes: list[TrainingClass], url: str, site_name: str, site_url: str, description: str
) -> dict:
    """schema.org Course with a CourseInstance per upcoming class, beside the
    Event microdata of each class card."""
    provider = {"@type": "Organization", "name": site_name, "sameAs": f"{site_url}/"}
    return {
        "@context": "https://schema.org",
        "@type": "Course",
        "name": "Certified Scrum Product Owner (CSPO)",
        "description": description,
        "url": url,
        "provider": provider,
        "hasCourseInstance": [_course_instance(c, url) for c in classes],
    }


def event_dates(cls: TrainingClass) -> tuple[str, str]:
    """startDate and endDate: the times of a one-day class; only the first
    and last days of a longer one, whose hours are in its event_schedule
    (a start and end time would claim it runs through the nights)."""
    sched = classes_service.schedule(cls)
    if sched.days == 1:
        return sched.first_start.isoformat(), sched.first_end.isoformat()
    last_end = sched.first_end + timedelta(days=sched.days - 1)
    return sched.first_start.date().isoformat(), last_end.date().isoformat()


def event_schedule(cls: TrainingClass) -> dict | None:
    """schema.org Schedule of a class over several days: the same hours on
    each, in its own zone. None for a one-day class."""
    sched = classes_service.schedule(cls)
    if sched.days == 1:
        return None
    first_day, last_day = event_dates(cls)
    return {
        "@type": "Schedule",
        "startDate": first_day,
        "endDate": last_day,
        "startTime": f"{sched.first_start:%H:%M}",
        "endTime": f"{sched.first_end:%H:%M}",
        "repeatFrequency": "P1D",
        "repeatCount": sched.days,
        "scheduleTimezone": cls.timezone,
    }


def _course_instance(cls: TrainingClass, page_url: str) -> dict:
    start_date, end_date = event_dates(cls)
    instance: dict = {
        "@type": "CourseInstance",
        "name": cls.title,
        "courseMode": "online" if cls.online else "onsite",
        "startDate": start_date,
        "endDate": end_date,
        "eventStatus": "https://schema.org/"
        + ("EventCancelled" if cls.status == ClassStatus.CANCELLED else "EventScheduled"),
        "location": (
            {"@type": "VirtualLocation", "url": page_url}
            if cls.online
            else {"@type": "Place", "name": cls.location, "address": cls.location}
        ),
    }
    schedule = event_schedule(cls)
    if schedule:
        instance["eventSchedule"] = schedule
    if cls.trainer:
        instance["instructor"] = {"@type": "Person", "name": cls.trainer}
    if cls.price is not None:
        offer = {"@type": "Offer", "price": str(cls.price), "priceCurrency": cls.currency}
        if cls.registration_url:
            offer["url"] = cls.registration_url
        instance["offers"] = offer
    return instance
