"""Bounds on rendering an admin's template, in time and in size.

An announcement's text is a program of sorts: three nested loops over a
thousand items, or `{{ "x"|center(3000000) }}`, held a web worker for half a
minute or made a 3 MB page, and the same tricks scale to gigabytes. So:

- no value a template builds may be longer than MAX_LENGTH (characters,
  bytes or items), nor an integer wider than MAX_BITS. Whatever could build
  a bigger one (repetition, padding and format widths, joins, replacements,
  indentation...) is checked *before* it runs, from its arguments; every
  other operator, filter and method call has its result checked after;
- a render has a deadline (RENDER_SECONDS), checked at every loop
  iteration, operator, filter and call;
- output is streamed (Template.generate) and counted: one part of one mail
  is at most MAX_OUTPUT characters;
- what would buffer output out of sight of that count, or call itself
  (macros, call blocks, `{% set %}` and `{% filter %}` blocks, recursive
  loops), is refused before rendering, by services.mail.templating.

services.mail.sandbox applies these checks to Jinja's sandbox.
"""

from __future__ import annotations

import contextlib
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from jinja2 import Template
from markupsafe import soft_str

# One part of one mail (subject, text or HTML), about 200 kB.
MAX_OUTPUT = 200_000
# Any one value built on the way: no part of a mail needs a longer one.
MAX_LENGTH = MAX_OUTPUT
MAX_BITS = 20_000  # about 6,000 digits
MAX_EXPONENT = 64
MAX_JSON_INDENT = 16
RENDER_SECONDS = 0.2


class LimitExceeded(Exception):
    """A render went past a bound; the message says which."""


class TooBig(LimitExceeded):
    pass


class TooSlow(LimitExceeded):
    pass


_deadline: ContextVar[float | None] = ContextVar("template_deadline", default=None)


@contextlib.contextmanager
def budget(seconds: float = RENDER_SECONDS) -> Iterator[None]:
    """Renders inside this block must finish within `seconds` in all."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def tick() -> None:
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline:
        raise TooSlow(f"over {RENDER_SECONDS:g} s for one mail")


def render(template: Template, context: dict) -> str:
    """The template's output, streamed and counted. (What takes time between
    two chunks, a loop, an operator, a filter or a call, checks the clock.)"""
    parts: list[str] = []
    size = 0
    for chunk in template.generate(context):
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise TooBig(f"the mail would be over {MAX_OUTPUT:,} characters long")
        parts.append(chunk)
    return "".join(parts)


# --- Sizes: checked before a value is built, and after.

_SIZED = (str, bytes, bytearray, list, tuple, dict, set, frozenset)


def need(size: int, what: str) -> None:
    """Refuse to build a value of `size` characters or items."""
    if size > MAX_LENGTH:
        raise TooBig(f"{what} would make a value of more than {MAX_LENGTH:,} characters")


def checked(value: Any) -> Any:
    """`value` itself, unless it is past the bounds."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_BITS:
            raise TooBig("that number has too many digits")
    elif isinstance(value, _SIZED) and len(value) > MAX_LENGTH:
        raise TooBig(f"a value of {len(value):,} characters or items is more than a mail holds")
    return value


def _number(value: Any) -> int:
    """A width or count as given; what is not an integer is left for the
    function itself to refuse."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _digits(text: str, what: str) -> None:
    for run in re.findall(r"\d+", text):
        if len(run) > 7 or int(run) > MAX_LENGTH:
            raise TooBig(f"{what} with a width or precision of {run[:12]}")


# printf-style: %[(name)][flags][width][.precision][length]type
_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.)", re.S)


def percent_format(fmt: str | bytes, values: Any) -> None:
    """Widths and precisions of a `%` format, `*` ones read from `values`."""
    if isinstance(fmt, bytes | bytearray):
        fmt = fmt.decode("latin-1")
    starred = False
    for match in _PERCENT.finditer(fmt):
        for part in match.groups()[:2]:
            if part == "*":
                starred = True
            elif part:
                _digits(part, "a % format")
    if starred:
        for value in values if isinstance(values, tuple) else (values,):
            need(abs(_number(value)), "a % format")


def brace_format(fmt: str, args: tuple, kwargs: dict) -> None:
    """Widths and precisions of a str.format string; a width given as an
    argument ({:{w}}) is checked among the arguments."""
    nested = False
    for _, _, spec, _ in string.Formatter().parse(fmt):
        if spec:
            _digits(spec, "a format")
            nested = nested or "{" in spec
    if nested:
        for value in (*args, *kwargs.values()):
            need(abs(_number(value)), "a format")


def _joined(items: Iterable, separator: Any, what: str) -> list:
    """The items to join, read one by one and refused as soon as the
    joined text would be too long."""
    sep = len(soft_str(separator))
    out, total = [], 0
    for item in items:
        total += len(soft_str(item)) + sep
        need(total, what)
        out.append(item)
    return out


def _item_size(item: Any) -> int:
    return len(item) if isinstance(item, _SIZED) else 1


def metered(items: Iterator) -> Iterator:
    """A lazy sequence (map, select, batch...): its items together may not
    be bigger than one value, so no list, join or sort of them can be."""
    total = 0
    for item in items:
        tick()
        total += _item_size(item)
        need(total, "that sequence")
        yield item


def checked_or_metered(value: Any) -> Any:
    if isinstance(value, Iterator) and not isinstance(value, _SIZED):
        return metered(value)
    return checked(value)


def method_call(obj: Any, args: tuple, kwargs: dict) -> tuple:
    """Check a call of a str, bytes or int method that could build a huge
    value; returns the arguments to call it with (an iterable to join is
    read once, here)."""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, str | bytes | bytearray):
        if name in ("center", "ljust", "rjust", "zfill") and args:
            need(_number(args[0]), f".{name}()")
        elif name == "expandtabs":
            tab = _number(args[0] if args else kwargs.get("tabsize", 8))
            need(len(owner) + owner.count("\t" if isinstance(owner, str) else b"\t") * tab, name)
        elif name == "replace" and len(args) >= 2:
            old, new = args[0], args[1]
            times = len(owner) + 1 if not old else owner.count(old)
            if len(args) > 2 and _number(args[2]) >= 0:
                times = min(times, _number(args[2]))
            need(len(owner) + times * len(new), ".replace()")
        elif name == "join" and args:
            args = (_joined(args[0], owner, ".join()"), *args[1:])
        elif name in ("format", "format_map") and isinstance(owner, str):
            values = args[0] if name == "format_map" and args else kwargs
            brace_format(owner, args if name == "format" else (), dict(values))
        elif name == "translate" and args and hasattr(args[0], "values"):
            longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
            need(len(owner) * longest, ".translate()")
    elif isinstance(owner, int) and name == "to_bytes":
        need(_number(args[0] if args else kwargs.get("length", 1)), ".to_bytes()")
    return args


def binop(operator: str, left: Any, right: Any) -> None:
    """Check `left operator right` before it runs."""
    both_ints = isinstance(left, int) and isinstance(right, int)
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, _SIZED) and isinstance(times, int):
                need(len(seq) * times, "that repetition")
        if both_ints and left.bit_length() + right.bit_length() > MAX_BITS:
            raise TooBig("that product has too many digits")
    elif operator == "**":
        if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise TooBig(f"the exponent {right} is too large")
        if both_ints and right > 0 and left.bit_length() * right > MAX_BITS:
            raise TooBig("that power has too many digits")
    elif operator == "+":
        if isinstance(left, _SIZED) and isinstance(right, _SIZED):
            need(len(left) + len(right), "that sum")
    elif operator == "%" and isinstance(left, str | bytes):
        percent_format(left, right)


# --- Filters: Jinja's own, each checked before (where it could build a
# huge value from small arguments) and after.


def _center(a: dict) -> None:
    need(_number(a["width"]), "center")


def _indent(a: dict) -> None:
    width = a["width"]
    per_line = _number(width) if not isinstance(width, str) else len(width)
    text = soft_str(a["s"])
    need(len(text) + (text.count("\n") + 1) * per_line, "indent")


def _wordwrap(a: dict) -> None:
    text = soft_str(a["s"])
    wrap = a["wrapstring"]
    wrap_len = len(wrap) if wrap is not None else 2
    lines = len(text) // max(_number(a["width"]), 1) + text.count("\n") + 1
    need(len(text) + lines * wrap_len, "wordwrap")


def _replace(a: dict) -> None:
    text, old, new = soft_str(a["s"]), soft_str(a["old"]), soft_str(a["new"])
    times = len(text) + 1 if not old else text.count(old)
    if a["count"] is not None:
        times = min(times, max(_number(a["count"]), 0))
    need(len(text) + times * len(new), "replace")


def _join(a: dict) -> None:
    a["value"] = _joined(a["value"], a["d"], "join")


def _format(a: dict) -> None:
    percent_format(soft_str(a["value"]), a["kwargs"] or a["args"])


def _batch(a: dict) -> None:
    need(_number(a["linecount"]), "batch")


def _slice(a: dict) -> None:
    need(_number(a["slices"]), "slice")


def _urlize(a: dict) -> None:
    text = soft_str(a["value"])
    # Each word that may become a link gets its address again, and attributes.
    links = sum(1 for word in text.split() if any(c in word for c in ".:@"))
    extra = sum(len(soft_str(a[k] or "")) for k in ("target", "rel")) + 64
    need(len(text) * 2 + links * extra, "urlize")


def _tojson(a: dict) -> None:
    indent = a["indent"]
    if (len(indent) if isinstance(indent, str) else _number(indent)) > MAX_JSON_INDENT:
        raise TooBig(f"tojson indents by at most {MAX_JSON_INDENT}")


def _sum(a: dict) -> None:
    if not isinstance(a["start"], int | float):
        # Lists would be copied over and over, in time that grows as a square.
        raise ValueError("sum adds numbers only")


PRE_CHECKS: dict[str, Callable[[dict], None]] = {
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "replace": _replace,
    "join": _join,
    "format": _format,
    "batch": _batch,
    "slice": _slice,
    "urlize": _urlize,
    "tojson": _tojson,
    "sum": _sum,
}
