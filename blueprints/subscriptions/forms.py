"""The subscriptions blueprint's forms: the public signup (no CSRF token),
preferences, and the resend form."""

from __future__ import annotations

from wtforms import EmailField, HiddenField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, Optional

from web.forms import (
    HtmlForm,
    MultiCheckboxField,
    known_topic,
    no_control_characters,
    no_links,
    readable,
    topic_choices,
)


class PublicForm(HtmlForm):
    """A form on a page that is the same for every visitor: no CSRF token.
    The signup is guarded by its Origin check and traps instead; the resend
    form carries its own capability (the expired link's token)."""

    class Meta(HtmlForm.Meta):
        csrf = False


class SignupForm(PublicForm):
    email = EmailField(
        "Email address",
        validators=[DataRequired("Enter your email address."), Length(max=254), readable],
        render_kw={"autocomplete": "email", "spellcheck": "false", "maxlength": 254},
    )
    name = StringField(
        "First name (optional)",
        validators=[Optional(), Length(max=100), readable, no_control_characters, no_links],
        render_kw={"autocomplete": "given-name", "maxlength": 100},
    )
    topics = MultiCheckboxField(
        "Send me",
        choices=topic_choices(),
        validators=[known_topic],
    )
    placement = HiddenField()
    source = HiddenField()
    started = HiddenField()
    ref = HiddenField()
    utm_source = HiddenField()
    utm_medium = HiddenField()
    utm_campaign = HiddenField()
    utm_term = HiddenField()
    utm_content = HiddenField()
    # The honeypot: hidden from people by CSS, filled in by naive bots.
    nickname = StringField(
        "Leave this field empty", render_kw={"autocomplete": "off", "tabindex": "-1"}
    )
    submit = SubmitField("Subscribe")


class PreferencesForm(HtmlForm):
    topics = MultiCheckboxField("I want to receive", choices=topic_choices())
    save = SubmitField("Save my choices")
    unsubscribe_all = SubmitField("Unsubscribe from everything")


class ResendForm(PublicForm):
    token = HiddenField()
    submit = SubmitField("Send me a new link")
