"""Announcement text: Markdown with merge tags, rendered in a Jinja sandbox.

Admins write `{{ first_name }}`, `{{ class.title }}`, `{{ unsubscribe_url }}`.
The sandbox keeps their text from reaching Python objects
(`{{ ''.__class__.__mro__ }}` raises), and StrictUndefined turns any name we
did not hand in (`{{ config }}`) into a clear error instead of an empty string.

One text goes to many leads, so it is compiled once: the subject and the
text part are Jinja templates of the admin's text as written, and the HTML
part is a Jinja template made by rendering the admin's Markdown once, with
the merge tags kept out of Markdown's way. Each recipient's values are then
filled in with autoescape on: the HTML's structure comes from the admin's
text only, and a value (a lead's name such as `[Win](//evil.example)` or
`<b>`) is always text. A `{% if %}` or `{% for %}` around whole Markdown
blocks belongs on lines of its own, with blank lines around it.

Every render is bounded in time and size (services.mail.template_limits):
at save, at preview and in the worker alike.
"""

from __future__ import annotations

import contextlib
import functools
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

from jinja2 import StrictUndefined, Template, TemplateError, UndefinedError, meta, nodes
from jinja2.sandbox import SecurityError
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

from services.mail import template_limits as limits
from services.mail.sandbox import BoundedSandbox

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


class TemplateLimitError(MergeTagError):
    """A render past the bounds in time or size: at save the text is
    refused; in the worker its announcement fails."""


# Text a lead typed (their name) and their address: never in the subject.
LEAD_TYPED = ("first_name", "email")
_NOT_ALLOWED_TAGS = {
    nodes.Include: "{% include %}",
    nodes.Extends: "{% extends %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}",
    # These keep their output aside, out of sight of the size bound, or call
    # themselves: no announcement needs them.
    nodes.Macro: "{% macro %}",
    nodes.CallBlock: "{% call %}",
    nodes.AssignBlock: "{% set %}…{% endset %}",
    nodes.FilterBlock: "{% filter %}",
    # What a lead typed stays text in the HTML part: no switching escaping off.
    nodes.EvalContextModifier: "{% autoescape %}",
}
# The one name Jinja gives a template that may be used: inside a for loop.
# (`self`, the template object, is refused like any name we did not hand in.)
_LOOP_NAMES = frozenset({"loop"})


def _environment(autoescape: bool) -> BoundedSandbox:
    env = BoundedSandbox(
        undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=True
    )
    # No globals at all (Jinja's default lipsum, cycler, range...): admins get
    # the merge tags and nothing else.
    env.globals.clear()
    # `|safe` would let a lead's name into the HTML part as markup.
    del env.filters["safe"]
    return env


_text_env = _environment(autoescape=False)  # the subject and the text part
_html_env = _environment(autoescape=True)  # the HTML part: values escaped
_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": True}).enable(
    ["table", "strikethrough"]
)


def _check_names(parsed: nodes.Template, context: dict | frozenset[str]) -> None:
    """Refuse, before rendering, what the merge tags do not offer: names we
    did not hand in (even in a branch that would not run, `self` included)
    and tags that load other templates."""
    labels = [label for kind, label in _NOT_ALLOWED_TAGS.items() if parsed.find(kind) is not None]
    if any(loop.recursive for loop in parsed.find_all(nodes.For)):
        labels.append("{% for ... recursive %}")
    if labels:
        raise MergeTagError(
            f"{labels[0]} is not available in announcements. "
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


@contextlib.contextmanager
def _readable_errors(context: dict) -> Iterator[None]:
    """Whatever compiling or rendering an admin's text raises, as a
    MergeTagError the admin can act on."""
    try:
        yield
    except MergeTagError:
        raise
    except limits.TooBig as exc:
        raise TemplateLimitError(f"That template would make a text far too long: {exc}.") from exc
    except limits.TooSlow as exc:
        raise TemplateLimitError(
            f"That template takes too long to render ({exc}): "
            "look for loops inside loops, or texts made very long."
        ) from exc
    except RecursionError as exc:
        raise TemplateLimitError("That template nests too deeply to be rendered.") from exc
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


# --- The HTML part: the admin's Markdown rendered once into a template.

# A Jinja tag as written: `{{ ... }}`, `{% ... %}` or `{# ... #}`, strings in
# it read whole (a "}}" in a string does not end it), a raw block as one.
_STRING = r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\""""
_TAG = re.compile(
    r"\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}"
    rf"|\{{\{{(?:{_STRING}|[^'\"}}]|\}}(?!\}}))*\}}\}}"
    rf"|\{{%(?:{_STRING}|[^'\"%]|%(?!\}}))*%\}}"
    r"|\{#.*?#\}",
    re.S,
)
# What stands for a tag while Markdown runs: lowercase letters and digits,
# which no Markdown rule changes or escapes (in text, code, link targets and
# titles alike), ending in a colon, so `<{{ unsubscribe_url }}>` still reads
# as an autolink. The random part is in no admin's text.
_MARK = f"mt{secrets.token_hex(5)}"
_HOLDER = re.compile(rf"{_MARK}(?:n(\d+)|(o)|c)x:")
_LINK_OPEN, _LINK_CLOSE = f"{_MARK}ox:", f"{_MARK}cx:"
_LINK_FILTER = "{% filter link_target %}", "{% endfilter %}"
_SAFE_LINK = re.compile(r"https?://|mailto:", re.I)


def _link_target(value: str) -> str:
    """A link whose target is made by merge tags: Markdown vetted the text
    around the tags, this vets what they make of it."""
    if not _SAFE_LINK.match(value):
        raise MergeTagError(
            "A link made with merge tags must lead to an https://, http:// or mailto: "
            "address: what a visitor typed (a name) never becomes a link."
        )
    return value


_html_env.filters["link_target"] = _link_target

# Merge tags whose value is one of our own links. Written bare in the text
# (not as a Markdown link), they become links in the HTML part; the text
# part shows the address as it is. A value a lead typed never does.
URL_TAGS = frozenset(tag for tag in MERGE_TAGS if tag.endswith("_url"))
_BARE_URL_TAG = re.compile(
    r"(\{\{-?\s*)(" + "|".join(re.escape(t) for t in sorted(URL_TAGS)) + r")(\s*-?\}\})"
)


_WEB_LINK = re.compile(r"https?://", re.I)


def _as_link(value: object) -> object:
    if isinstance(value, str) and _WEB_LINK.match(value):
        return Markup('<a href="{0}">{0}</a>').format(value)
    return value  # empty (a class without a registration link): nothing to link


_html_env.filters["as_link"] = _as_link


def _in_running_text(tokens: list[Token]) -> set[int]:
    """The tags that stand in running text: not inside a link (its text or
    target), an image, code or an attribute."""
    found: set[int] = set()
    for token in tokens:
        depth = 0
        for child in token.children or ():
            depth += {"link_open": 1, "link_close": -1}.get(child.type, 0)
            if child.type == "text" and depth == 0:
                found.update(int(n) for n, _ in _HOLDER.findall(child.content) if n)
    return found


def _check_link_loops(parsed: nodes.Template) -> None:
    """A link target is built aside before it is checked (a filter block):
    a loop there would build it out of sight of the size bound."""
    for block in parsed.find_all(nodes.FilterBlock):
        if block.filter.name == "link_target" and block.find(nodes.For) is not None:
            raise MergeTagError(
                "A loop cannot make a link's address: use merge tags and {% if %} there."
            )


def _guard_links(tokens: list[Token]) -> None:
    """Link and image targets that hold a tag go through _link_target."""
    for token in tokens:
        for child in token.children or ():
            attr = {"link_open": "href", "image": "src"}.get(child.type)
            target = child.attrGet(attr) if attr else None
            if isinstance(target, str) and _MARK in target:
                child.attrSet(attr, f"{_LINK_OPEN}{target}{_LINK_CLOSE}")


def _unwrap_tag_paragraphs(tokens: list[Token], tags: list[str]) -> None:
    """A paragraph of nothing but `{% %}` tags (an {% if %} on its own
    line) is those tags alone, not an empty paragraph in every mail."""
    for opening, inline, closing in zip(tokens, tokens[1:], tokens[2:], strict=False):
        if opening.type != "paragraph_open" or closing.type != "paragraph_close":
            continue
        held = [int(n) for n, _ in _HOLDER.findall(inline.content)]
        if (
            held
            and not _HOLDER.sub("", inline.content).strip()
            and all(tags[n].startswith(("{%", "{#")) for n in held)
        ):
            opening.hidden = closing.hidden = True


def _markdown_template(source: str) -> str:
    """The HTML part's Jinja source: the admin's Markdown rendered, each merge
    tag left as written, link targets made by tags checked when rendered."""
    tags: list[str] = []

    def hold(match: re.Match) -> str:
        tags.append(match.group())
        return f"{_MARK}n{len(tags) - 1}x:"

    tokens = _md.parse(_TAG.sub(hold, source))
    _guard_links(tokens)
    _unwrap_tag_paragraphs(tokens, tags)
    in_text = _in_running_text(tokens)
    html = _md.renderer.render(tokens, _md.options, {})

    def put_back(match: re.Match) -> str:
        number, opening = match.groups()
        if number is not None:
            tag = tags[int(number)]
            if int(number) in in_text and _BARE_URL_TAG.fullmatch(tag):
                return _BARE_URL_TAG.sub(r"\1\2|as_link\3", tag)
            return tag
        return _LINK_FILTER[0] if opening else _LINK_FILTER[1]

    return _HOLDER.sub(put_back, html)


# --- Compiled once per text, rendered per recipient.


@dataclass(frozen=True)
class Compiled:
    subject: Template
    text: Template
    html: Template


def _names_in(source: str) -> frozenset[str]:
    try:
        return frozenset(meta.find_undeclared_variables(_text_env.parse(source)))
    except TemplateError:
        return frozenset()  # compiling reports the syntax error


def _compile(env: BoundedSandbox, source: str, names: frozenset[str]) -> Template:
    parsed = env.parse(source)
    _check_names(parsed, names)
    return env.template(parsed)


def _compile_html(body: str) -> Template:
    """The same tags as the text part (checked there), in Markdown's HTML."""
    parsed = _html_env.parse(_markdown_template(body))
    _check_link_loops(parsed)
    return _html_env.template(parsed)


@functools.lru_cache(maxsize=256)
def _compile_subject(subject: str, names: frozenset[str]) -> Template:
    """The subject becomes a header, so text a visitor typed (name, address)
    may not appear in it."""
    used = {name for name in LEAD_TYPED if name in _names_in(subject)}
    if used:
        raise MergeTagError(
            f"The subject cannot use {', '.join(sorted(used))}: what a visitor typed never goes "
            "into a mail header. Put it in the body instead."
        )
    return _compile(_text_env, subject, names)


# An announcement goes to many leads with one text: parsed, checked and
# compiled once, not once per mail (a compile costs more than a render).
@functools.lru_cache(maxsize=64)
def compile_announcement(subject: str, body: str, names: frozenset[str]) -> Compiled:
    """The subject, text and HTML templates of an admin's text, for a context
    of `names`."""
    return Compiled(
        subject=_compile_subject(subject, names),
        text=_compile(_text_env, body, names),
        html=_compile_html(body),
    )


@dataclass
class RenderedBody:
    subject: str
    text: str
    html: str


def render(subject: str, body: str, context: dict) -> RenderedBody:
    """Subject and body for one recipient; the subject is kept to one line
    whatever the class fields produce."""
    with _readable_errors(context):
        compiled = compile_announcement(subject, body, frozenset(context))
        with limits.budget():  # for the three parts together, compiling aside
            return RenderedBody(
                subject=_one_line(limits.render(compiled.subject, context)),
                text=limits.render(compiled.text, context),
                html=limits.render(compiled.html, context),
            )


def _one_line(subject: str) -> str:
    return " ".join(subject.split())[:200]


def render_subject(subject: str, context: dict) -> str:
    """The subject alone for one recipient (headings and lists of
    announcements), with the same checks and bounds as render."""
    with _readable_errors(context):
        template = _compile_subject(subject, frozenset(context))
        with limits.budget():
            return _one_line(limits.render(template, context))


def check(subject: str, body: str, context: dict) -> None:
    """Raise MergeTagError when the admin's text would not render."""
    render(subject, body, context)
