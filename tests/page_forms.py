"""The forms and links of one of our pages, read as a browser reads them:
what each form sends when submitted untouched. The input sweep
(test_input_sweep.py) crawls the site with it and replaces one field at a
time."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser


@dataclass
class PageForm:
    """A <form> as a browser sends it untouched: its method, the URL it goes
    to, and its fields in order (checked boxes, selected options, the first
    named submit button)."""

    method: str
    action: str
    fields: list[tuple[str, str]]


class _Forms(HTMLParser):
    def __init__(self, page_url: str):
        super().__init__()
        self.page_url = page_url
        self.forms: list[PageForm] = []
        self.links: list[str] = []
        self._form: PageForm | None = None
        self._button = False
        self._select: tuple[str, list[str]] | None = None
        self._textarea: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "a" and a.get("href", "").startswith("/"):
            self.links.append(a["href"])
        elif tag == "form":
            action = a.get("action") or self.page_url
            self._form = PageForm(a.get("method", "get").upper(), action, [])
            self._button = False
        elif tag == "option" and self._select is not None:
            value = a.get("value", "")
            self._select[1].insert(0 if "selected" in a else len(self._select[1]), value)
        elif self._form is None or "name" not in a:
            return
        elif tag == "select":
            self._select = (a["name"], [])
        elif tag == "textarea":
            self._textarea = (a["name"], [])
        elif tag == "input":
            kind = a.get("type", "text").lower()
            if kind in ("submit", "image", "button"):
                if not self._button:
                    self._form.fields.append((a["name"], a.get("value", "")))
                    self._button = True
            elif kind not in ("checkbox", "radio") or "checked" in a:
                self._form.fields.append((a["name"], a.get("value", "")))

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1].append(data)

    def handle_endtag(self, tag):
        if tag == "form" and self._form is not None:
            self.forms.append(self._form)
            self._form = None
        elif tag == "textarea" and self._textarea and self._form:
            name, text = self._textarea
            self._form.fields.append((name, "".join(text).removeprefix("\n")))
            self._textarea = None
        elif tag == "select" and self._select and self._form:
            name, options = self._select
            self._form.fields.append((name, options[0] if options else ""))
            self._select = None


def page_forms(html: str, page_url: str) -> tuple[list[PageForm], list[str]]:
    """The forms of a page, filled in as the page leaves them, and the
    site-relative links on it (HTML entities decoded)."""
    parser = _Forms(page_url)
    parser.feed(html)
    return parser.forms, parser.links
