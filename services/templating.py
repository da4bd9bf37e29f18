"""Announcement text: Markdown with merge tags, rendered in a Jinja sandbox.

Admins write `{{ first_name }}`, `{{ class.title }}`, `{{ unsubscribe_url }}`.
The sandbox keeps their text from reaching Python objects
(`{{ ''.__class__.__mro__ }}` raises), and StrictUndefined turns any name we
did not hand in (`{{ config }}`) into a clear error instead of an empty string.
"""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import StrictUndefined, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from markdown_it import MarkdownIt

MERGE_TAGS = {
    "first_name": "the lead's first name (empty when unknown): {{ first_name or 'there' }}",
    "email": "the lead's address",
    "unsubscribe_url": "the lead's one-click unsubscribe link",
    "preferences_url": "the lead's preferences page",
    "class.title": "the linked class's title",
    "class.start": "its start, in its own time zone",
    "class.end": "its end",
    "class.timezone": "its time zone",
    "class.where": "Online, or its location",
    "class.trainer": "its trainer",
    "class.price": "its price with currency",
    "class.seats_left": "seats left",
    "class.register_url": "the tracked register link",
    "class.calendar_url": "the .ics calendar file",
}


class MergeTagError(ValueError):
    """An admin's template that cannot be rendered, with a readable reason."""


_env = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
)
# No globals at all (Jinja's default lipsum, cycler, range...): admins get
# the merge tags and nothing else.
_env.globals.clear()
_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": True}).enable(
    ["table", "strikethrough"]
)


def _render(source: str, context: dict) -> str:
    try:
        return _env.from_string(source).render(**context)
    except SecurityError as exc:
        raise MergeTagError(
            "That template tries to reach inside Python objects, which is not allowed. "
            "Use only the merge tags listed beside the editor."
        ) from exc
    except UndefinedError as exc:
        raise MergeTagError(
            f"Unknown merge tag: {exc.message}. Use only the merge tags listed beside the editor."
        ) from exc
    except TemplateError as exc:
        raise MergeTagError(f"The merge tags do not parse: {exc}") from exc


@dataclass
class RenderedBody:
    subject: str
    text: str
    html: str


def render(subject: str, body: str, context: dict) -> RenderedBody:
    """Subject and body for one recipient. The subject becomes a header: it
    is kept to one line whatever the merge tags produce."""
    subject_out = " ".join(_render(subject, context).split())[:200]
    text = _render(body, context)
    return RenderedBody(subject=subject_out, text=text, html=_md.render(text))


def check(subject: str, body: str, context: dict) -> None:
    """Raise MergeTagError when the admin's text would not render."""
    render(subject, body, context)
