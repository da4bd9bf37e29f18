"""Admin forms (Flask-WTF): parsing only; the rules live in services."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    DecimalField,
    EmailField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
    TimeField,
    URLField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

from services import dates
from services.outgoing_webhooks.events import EVENT_TYPES
from web.forms import MultiCheckboxField, topic_choices

ROLE_CHOICES = [SelectChoice("marketer", "Marketer"), SelectChoice("admin", "Admin")]


def in_date_range(_form, field) -> None:
    """services.dates' range, shown beside the field (the services check it too)."""
    try:
        dates.check(field.data, field.label.text)
    except dates.DateRangeError as exc:
        raise ValidationError(str(exc)) from exc


class ClassForm(FlaskForm):
    title = StringField(
        "Title",
        validators=[DataRequired(), Length(max=200)],
        default="Certified Scrum Product Owner (CSPO)",
    )
    course = StringField("Course", validators=[Length(max=20)], default="CSPO")
    # InputRequired, not DataRequired: a date that does not parse keeps its
    # "Not a valid date value" instead of a misleading "This field is required".
    start_date = DateField("Start date", validators=[InputRequired(), in_date_range])
    start_time = TimeField("Start time", validators=[InputRequired()])
    end_date = DateField("End date", validators=[InputRequired(), in_date_range])
    end_time = TimeField("End time", validators=[InputRequired()])
    timezone = StringField(
        "Time zone",
        validators=[DataRequired(), Length(max=64)],
        default="Europe/Berlin",
        render_kw={"list": "zones"},
    )
    online = BooleanField("Online class")
    location = StringField("Location (for classes in person)", validators=[Length(max=200)])
    trainer = StringField("Trainer", validators=[Length(max=200)])
    # The column holds 10 digits, 2 after the point.
    price = DecimalField(
        "Price", places=2, validators=[Optional(), NumberRange(min=0, max=99_999_999)]
    )
    currency = StringField("Currency", validators=[Length(min=3, max=3)], default="EUR")
    seats = IntegerField("Seats", validators=[Optional(), NumberRange(min=0, max=10000)])
    seats_taken = IntegerField(
        "Seats taken", validators=[Optional(), NumberRange(min=0)], default=0
    )
    registration_url = URLField("Registration link", validators=[Optional(), Length(max=500)])
    status = SelectField(
        "Status",
        choices=[
            SelectChoice("scheduled", "Scheduled"),
            SelectChoice("full", "Full"),
            SelectChoice("cancelled", "Cancelled"),
        ],
    )
    submit = SubmitField("Save class")


class AnnouncementForm(FlaskForm):
    subject = StringField("Subject", validators=[DataRequired(), Length(max=200)])
    body = TextAreaField(
        "Body (Markdown with merge tags)",
        validators=[DataRequired(), Length(max=50_000)],
        render_kw={"rows": 14},
    )
    topic = SelectField("Send to leads who want", choices=topic_choices())
    training_class = SelectField("Linked class", choices=[], validate_choice=False)
    source_slug = SelectField(
        "Only leads who signed up on",
        choices=[],
        validate_choice=False,
        validators=[Length(max=200)],
    )
    signed_up_from = DateField("Signed up from", validators=[Optional(), in_date_range])
    signed_up_until = DateField("Signed up until", validators=[Optional(), in_date_range])
    ignore_frequency_cap = BooleanField("Send even to leads who got marketing mail recently")
    submit = SubmitField("Save draft")


class ScheduleForm(FlaskForm):
    # Its range is checked by announcements.schedule, whose errors the page shows.
    send_date = DateField("Date", validators=[Optional()])
    send_time = TimeField("Time", validators=[Optional()])
    timezone = StringField(
        "Time zone", validators=[DataRequired(), Length(max=64)], default="Europe/Berlin"
    )
    schedule = SubmitField("Schedule")
    send_now = SubmitField("Send now")


class ActionForm(FlaskForm):
    """A bare POST with its CSRF token (pause, resume, cancel, retry...)."""

    submit = SubmitField("Go")


class UserCreateForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    role = SelectField("Role", choices=ROLE_CHOICES)
    password = PasswordField(
        "Password (12 characters or more)", validators=[DataRequired(), Length(max=1000)]
    )
    submit = SubmitField("Create user")


class InvitationForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    role = SelectField("Role", choices=ROLE_CHOICES)
    submit = SubmitField("Send invitation")


class UserUpdateForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
    active = BooleanField("Active")
    submit = SubmitField("Save")


class SuppressForm(FlaskForm):
    email = EmailField("Address to suppress", validators=[DataRequired(), Length(max=320)])
    submit = SubmitField("Suppress")


class WebhookForm(FlaskForm):
    # Checked by services.outgoing_webhooks (scheme, SSRF), which explains a refusal.
    url = URLField("URL the events are posted to", validators=[DataRequired(), Length(max=2000)])
    description = StringField("Description", validators=[Length(max=200)])
    events = MultiCheckboxField(
        "Events", choices=[SelectChoice(t, f"{t}: {label}") for t, label in EVENT_TYPES.items()]
    )
    submit = SubmitField("Add endpoint")
