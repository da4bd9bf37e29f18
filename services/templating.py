"""Announcement text: Markdown with merge tags, rendered in a Jinja sandbox.

Admins write `{{ first_name }}`, `{{ class.title }}`, `{{ unsubscribe_url }}`.
The sandbox keeps their text from reaching Python objects
(`{{ ''.__class__.__mro__ }}` raises), and StrictUndefined turns any name we
did not hand in (`{{ config }}`) into a clear error instead of an empty string.
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass

from jinja2 import StrictUndefined, TemplateError, UndefinedError, nodes
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
    "class.when": "its dates and hours, e.g. 10–11 December 2026, 09:00–17:00",
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


# Text a lead typed (their name) and their address: escaped for Markdown in
# the HTML version, so "[Win](//evil.example)" in a name stays text and never
# becomes a link, a heading or emphasis.
LEAD_TYPED = ("first_name", "email")
# The longest string or list one `*` may build, and the largest exponent of
# `**`: an admin's typo must not take the web worker's memory or CPU.
MAX_REPEAT = 10_000
MAX_EXPONENT = 64
_NOT_ALLOWED_TAGS = {
    nodes.Include: "{% include %}",
    nodes.Extends: "{% extends %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}",
}
# The one name Jinja gives a template that may be used: inside a for loop.
# (`self`, the template object, is refused like any name we did not hand in.)
_LOOP_NAMES = frozenset({"loop"})


class _TooBig(SecurityError):
    pass


class _MergeTagEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise _TooBig(f"the exponent {right} is too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_REPEAT
                ):
                    raise _TooBig("that repetition makes a text that is too long")
        return super().call_binop(context, operator, left, right)


_env = _MergeTagEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
# No globals at all (Jinja's default lipsum, cycler, range...): admins get
# the merge tags and nothing else.
_env.globals.clear()
_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": True}).enable(
    ["table", "strikethrough"]
)
_MD_PUNCTUATION = re.compile(r"""([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])""")


def _md_escape(value: object) -> object:
    """A backslash before every ASCII punctuation character: CommonMark then
    shows each one as itself."""
    return _MD_PUNCTUATION.sub(r"\\\1", value) if isinstance(value, str) else value


def _check_names(parsed: nodes.Template, context: dict | frozenset[str]) -> None:
    """Refuse, before rendering, what the merge tags do not offer: names we
    did not hand in (even in a branch that would not run, `self` included)
    and tags that load other templates."""
    for node_type, label in _NOT_ALLOWED_TAGS.items():
        if parsed.find(node_type) is not None:
            raise MergeTagError(
                f"{label} is not available in announcements. "
                "Use only the merge tags listed beside the editor."
            )
    stored = {n.name for n in parsed.find_all(nodes.Name) if n.ctx in ("store", "param")}
    known = set(context) | stored | _LOOP_NAMES
    for name in parsed.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in known:
            raise MergeTagError(
                f"Unknown merge tag: {name.name!r} is undefined. "
                "Use only the merge tags listed beside the editor."
            )


# An announcement goes to many leads with one text: it is parsed, checked
# and compiled once, not once per mail (a compile costs more than a render).
@functools.lru_cache(maxsize=64)
def _names_in(source: str) -> frozenset[str]:
    from jinja2 import meta

    try:
        return frozenset(meta.find_undeclared_variables(_env.parse(source)))
    except TemplateError:
        return frozenset()  # _render reports the syntax error


@functools.lru_cache(maxsize=64)
def _compiled(source: str, names: frozenset[str]):
    _check_names(_env.parse(source), names)
    return _env.from_string(source)


def _render(source: str, context: dict) -> str:
    try:
        return _compiled(source, frozenset(context)).render(**context)
    except MergeTagError:
        raise
    except _TooBig as exc:
        raise MergeTagError(f"That template would make a text far too long: {exc}.") from exc
    except SecurityError as exc:
        raise MergeTagError(
            "That template tries to reach inside Python objects, which is not allowed. "
            "Use only the merge tags listed beside the editor."
        ) from exc
    except UndefinedError as exc:
        if context.get("class") is None and "'None' has no attribute" in str(exc.message):
            raise MergeTagError(
                "The class merge tags need a linked class: choose one under “Linked class”."
            ) from exc
        raise MergeTagError(
            f"Unknown merge tag: {exc.message}. Use only the merge tags listed beside the editor."
        ) from exc
    except TemplateError as exc:
        raise MergeTagError(f"The merge tags do not parse: {exc}") from exc
    except Exception as exc:  # 1/0, a filter given the wrong arguments...
        raise MergeTagError(f"The merge tags cannot be rendered: {exc}") from exc


@dataclass
class RenderedBody:
    subject: str
    text: str
    html: str


def render(subject: str, body: str, context: dict) -> RenderedBody:
    """Subject and body for one recipient. The subject becomes a header, so
    text a visitor typed (name, address) may not appear in it, and it is kept
    to one line whatever the class fields produce."""
    used = {name for name in LEAD_TYPED if name in _names_in(subject)}
    if used:
        raise MergeTagError(
            f"The subject cannot use {', '.join(sorted(used))}: what a visitor typed never goes "
            "into a mail header. Put it in the body instead."
        )
    subject_out = " ".join(_render(subject, context).split())[:200]
    text = _render(body, context)
    markdown_context = {k: _md_escape(v) if k in LEAD_TYPED else v for k, v in context.items()}
    html = _markdown_with(_render(body, markdown_context), _stand_ins(context))
    return RenderedBody(subject=subject_out, text=text, html=html)


# One announcement, many recipients: their Markdown differs only in merge
# values (name, their own links), and parsing it was most of a mail's
# rendering time. Values that Markdown and HTML leave as they are (letters
# and digits; URLs of characters that are never escaped, all ASCII) are swapped for
# stand-ins of the same shape before parsing, so the HTML is parsed once
# per text and cached, then each recipient's values are put back. Such a
# value is an atom: Markdown never reads it as markup (a `--` in a link
# token does not become a dash). Other values stay in the text and are
# parsed with it.
_INERT = re.compile(r"[A-Za-z0-9._~:/?=@+-]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{1,31}:")
_STAND_IN = f"mergevalue{secrets.token_hex(6)}x"


def _stand_ins(context: dict) -> list[str]:
    """Values that may be stood in for, as they appear in the Markdown."""
    found = set()
    for key, value in context.items():
        for v in value.values() if isinstance(value, dict) else (value,):
            # What a lead typed is escaped for Markdown: only a value the
            # escaping leaves alone (a name of letters) is the same in both.
            if (
                isinstance(v, str)
                and v
                and _INERT.fullmatch(v)
                and (key not in LEAD_TYPED or _md_escape(v) == v)
            ):
                found.add(v)
    return sorted(found, key=len, reverse=True)  # longest first: no partial matches


@functools.lru_cache(maxsize=512)
def _markdown(source: str) -> str:
    return _md.render(source)


def _markdown_with(source: str, values: list[str]) -> str:
    present = [v for v in values if v in source]
    if not present:
        return _markdown(source)
    names = {}
    for i, v in enumerate(present):
        scheme = _SCHEME.match(v)  # a URL's stand-in is a URL: autolinks stay autolinks
        names[v] = f"{scheme.group() if scheme else ''}{_STAND_IN}{i}z"
    # Where each value occurs, longest first, never overlapping: a shorter
    # value is not looked for inside a longer one's stand-in. (A regular
    # expression would do it in one pass, but each mail's values differ and
    # compiling it cost more than the parse it saves.)
    spans: list[tuple[int, int, str]] = []
    for v in present:
        start = source.find(v)
        while start != -1:
            end = start + len(v)
            if not any(s < end and start < e for s, e, _ in spans):
                spans.append((start, end, names[v]))
            start = source.find(v, start + 1)
    spans.sort()
    shaped, pos = [], 0
    for start, end, name in spans:
        shaped += [source[pos:start], name]
        pos = end
    shaped.append(source[pos:])
    html = _markdown("".join(shaped))
    # Stand-ins hold a random part no value or text has, and none is part
    # of another ("...1z" is not in "...10z"): put back one by one.
    for v, name in names.items():
        html = html.replace(name, v)
    return html


def check(subject: str, body: str, context: dict) -> None:
    """Raise MergeTagError when the admin's text would not render."""
    render(subject, body, context)
