"""URL converters that refuse, in the router, what no link of ours holds:
a path parameter with a control character, or an id past what an id column
holds. Such a URL is a plain 404 before any view runs, so neither reaches a
query (PostgreSQL refuses NUL in text, and integers past its `integer`)."""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import BaseConverter, IntegerConverter, Map

from services.paging import MAX_ROW_ID


class TextConverter(BaseConverter):
    """`<name>` and `<string:name>`: one path segment without control characters."""

    regex = r"[^/\x00-\x1f\x7f]+"
    # Werkzeug guesses from the regex (it holds a "/"); one segment it is.
    part_isolating = True


class RowIdConverter(IntegerConverter):
    """`<int:name>`: a row id, 1 to MAX_ROW_ID."""

    def __init__(self, map: Map, *args, **kwargs) -> None:
        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", MAX_ROW_ID)
        super().__init__(map, *args, **kwargs)


def init_app(app: Flask) -> None:
    """Before any blueprint adds its rules: a rule takes its converters when added."""
    converters = app.url_map.converters
    converters["default"] = converters["string"] = TextConverter
    converters["int"] = RowIdConverter
    # A doubled slash is no path of ours: a 404, not Werkzeug's 308 to the
    # merged path (a one-click unsubscribe POST must never be redirected).
    app.url_map.merge_slashes = False
