"""Form base classes and field validators that every blueprint's forms use
(Flask-WTF). Validation of meaning lives in services."""

from __future__ import annotations

import re
from collections.abc import Iterable

from flask import request
from flask_wtf import FlaskForm
from flask_wtf.form import SUBMIT_METHODS
from wtforms import HiddenField, PasswordField, SelectMultipleField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from services.leads import topics

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\ufffd]")
# Control characters other than tab and line breaks: no keyboard types them,
# and PostgreSQL refuses NUL in text. Tab and line breaks are whitespace that
# fields trim, or refuse themselves (a name, a mail header).
_UNTYPABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
UNTYPABLE_MESSAGE = "This contains characters no keyboard types. Please type it again."
# Anything a mail client would turn into a link (they link bare domains such
# as "bit.ly/x" and addresses too), and markup. The "word.word" branch starts
# only where a run of letters starts: tried at every letter, it scanned each
# run again from there, and a long name took minutes (the fuzz test found it).
_LINKISH = re.compile(
    r"://|www\.|[<>@]"
    r"|\b(?:https?|ftp|mailto|javascript|data|file|tel|sms)\s*:"
    r"|\.(?:com|net|org|io|ru|xyz)\b"
    r"|(?<![^\W_])[^\W_]{2,}[.\u3002\uff0e\uff61][^\W\d_]{2,}",
    re.I,
)
# Bytes that were not UTF-8 reach us as "%FF" (Werkzeug keeps them quoted in
# urlencoded bodies) or as U+FFFD (multipart): the text did not arrive intact.
_UNREADABLE = re.compile(r"\ufffd|%[89a-f][0-9a-f]", re.I)


def has_untypable(texts: Iterable[str]) -> bool:
    return any(_UNTYPABLE.search(text) for text in texts if isinstance(text, str))


def readable(_form, field) -> None:
    if field.data and _UNREADABLE.search(field.data):
        raise ValidationError("Some characters could not be read. Please type this again.")


def no_control_characters(_form, field) -> None:
    if field.data and _CONTROL.search(field.data):
        raise ValidationError("Use letters, spaces and punctuation only.")


def no_links(_form, field) -> None:
    if field.data and _LINKISH.search(field.data):
        raise ValidationError("A name can't contain a web address or markup.")


def known_topic(_form, field) -> None:
    # Unknown values are dropped, so "only unknown ones" is "none ticked".
    if not topics.clean(field.data or []):
        raise ValidationError("Tick at least one thing you would like to receive.")


def topic_choices() -> list[SelectChoice]:
    return [SelectChoice(slug, label) for slug, label in topics.TOPICS.items()]


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()

    def pre_validate(self, form) -> None:
        # Unknown values are dropped by services.leads.topics.clean, not an error.
        pass


class HtmlForm(FlaskForm):
    """A form posted by a browser: fields come from the form body only.

    Flask-WTF would also read a JSON body and uploaded files, handing the
    validators numbers, lists and FileStorage objects where they expect text
    (a 500, not a 400). No page of ours sends either.

    Every field a person types into refuses control characters other than
    tab and line breaks, so no such value reaches a query. Hidden fields are
    the pages' own, cleaned where they are used; passwords are only hashed.
    """

    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form, formdata):
            if formdata is None or hasattr(formdata, "getlist"):  # given explicitly
                return formdata
            return request.form if request.method in SUBMIT_METHODS else None

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        for field in self:
            if isinstance(field, HiddenField | PasswordField) or field.errors:
                continue  # a field's own message says more
            if has_untypable(field.raw_data or ()):
                field.errors = [UNTYPABLE_MESSAGE]
                valid = False
        return valid
