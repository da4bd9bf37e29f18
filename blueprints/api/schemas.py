"""The API's JSON shapes (marshmallow): parsing and the OpenAPI document.
Rules beyond shape (dates' range, a class's times, the registration link)
are the services'; text rules are the forms' own checks (web.forms)."""

from __future__ import annotations

from types import SimpleNamespace

import marshmallow as ma
from marshmallow import fields, validate
from wtforms.validators import ValidationError as FormValidationError

from models import AnnouncementStatus, ClassStatus, LeadStatus, OutboxStatus
from services.leads import topics
from services.reporting import lead_query
from web import forms

MAX_INT = 2**31 - 1  # PostgreSQL's integer columns
MAX_PRICE = 99_999_999  # the column holds 10 digits, 2 after the point


def _price_in_range(value) -> None:
    if not 0 <= value <= MAX_PRICE:
        raise ma.ValidationError(f"Must be from 0 to {MAX_PRICE}.")


def _form_check(check):
    """A web.forms field check as a marshmallow validator: one rule, two front doors."""

    def validator(value) -> None:
        try:
            check(None, SimpleNamespace(data=value))
        except FormValidationError as exc:
            raise ma.ValidationError(str(exc)) from exc

    return validator


def _typable(value: str) -> None:
    # PostgreSQL refuses NUL in text (a 500), and nobody types control characters.
    if forms.has_untypable([value]):
        raise ma.ValidationError("Control characters are not allowed.")


def Text(max_length: int, min_length: int = 0, **kwargs) -> fields.String:
    extra = kwargs.pop("validate", [])
    return fields.String(
        validate=[validate.Length(min=min_length, max=max_length), _typable, *extra], **kwargs
    )


TOPIC = fields.String(validate=validate.OneOf(list(topics.TOPICS)))


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details."""

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "Messages per field, for 422"},
    )


# --- Leads


class LeadSchema(ma.Schema):
    id = fields.String(attribute="public_id", required=True)
    email = fields.String(required=True)
    name = fields.String(allow_none=True, required=True)
    status = fields.Enum(LeadStatus, by_value=True, required=True)
    topics = fields.Function(lambda lead: sorted(lead.topic_slugs), required=True)
    source = fields.String(attribute="source_slug", allow_none=True, required=True)
    placement = fields.String(attribute="source_placement", allow_none=True, required=True)
    utm_source = fields.String(allow_none=True)
    utm_medium = fields.String(allow_none=True)
    utm_campaign = fields.String(allow_none=True)
    created_at = fields.AwareDateTime(required=True)
    confirmed_at = fields.AwareDateTime(allow_none=True, required=True)
    unsubscribed_at = fields.AwareDateTime(allow_none=True, required=True)


class LeadQuerySchema(ma.Schema):
    """The lead browser's filters, and the page."""

    q = Text(100)
    status = fields.String(validate=validate.OneOf([s.value for s in LeadStatus]))
    topic = TOPIC
    source = Text(200)
    placement = Text(20)
    utm_source = Text(200)
    utm_campaign = Text(200)
    since = fields.Date()
    until = fields.Date()
    sort = fields.String(validate=validate.OneOf(list(lead_query.SORTS)))
    cursor = Text(1000, metadata={"description": "next_cursor of the page before"})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class LeadPageSchema(ma.Schema):
    leads = fields.List(fields.Nested(LeadSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)
    total = fields.Integer(required=True, metadata={"description": "counted up to 1000"})
    total_capped = fields.Boolean(required=True)


class SubscribeSchema(ma.Schema):
    email = Text(320, 1, required=True, metadata={"format": "email"})
    consent_text = Text(
        2000, 1, required=True, metadata={"description": "the exact words the person agreed to"}
    )
    topics = fields.List(TOPIC, required=True, validate=validate.Length(min=1, max=10))
    name = Text(
        100,
        validate=[_form_check(forms.readable), _form_check(forms.no_links)],
        allow_none=True,
    )
    source_url = fields.Url(
        schemes={"http", "https"},
        require_tld=False,
        validate=[validate.Length(max=500), _typable],
        allow_none=True,
        metadata={"description": "the page the person signed up on"},
    )


class AcceptedSchema(ma.Schema):
    accepted = fields.Boolean(
        required=True,
        metadata={"description": "a confirmation mail is queued unless one went out lately"},
    )


class TopicsSchema(ma.Schema):
    topics = fields.List(
        TOPIC,
        required=True,
        validate=validate.Length(max=10),
        metadata={"description": "none: unsubscribed from everything"},
    )


class TopicsResultSchema(ma.Schema):
    result = fields.String(required=True)
    lead = fields.Nested(LeadSchema, required=True)


# --- Classes


class ClassSchema(ma.Schema):
    id = fields.String(attribute="public_id", required=True)
    title = fields.String(required=True)
    course = fields.String(required=True)
    starts_at = fields.AwareDateTime(required=True)
    ends_at = fields.AwareDateTime(required=True)
    timezone = fields.String(required=True)
    online = fields.Boolean(required=True)
    location = fields.String(allow_none=True, required=True)
    trainer = fields.String(allow_none=True, required=True)
    price = fields.Decimal(
        as_string=True,
        allow_none=True,
        required=True,
        metadata={"type": "string", "example": "1290.00"},
    )
    currency = fields.String(required=True)
    seats = fields.Integer(allow_none=True, required=True)
    seats_taken = fields.Integer(required=True)
    seats_left = fields.Integer(allow_none=True, required=True)
    registration_url = fields.String(allow_none=True, required=True)
    status = fields.Enum(ClassStatus, by_value=True, required=True)


class ClassInputSchema(ma.Schema):
    """The admin form's fields and limits (blueprints/admin/forms.ClassForm)."""

    title = Text(200, 1, required=True)
    course = Text(20, load_default="CSPO")
    start_date = fields.Date(required=True)
    start_time = fields.Time(required=True, metadata={"description": "in the class's time zone"})
    end_date = fields.Date(required=True)
    end_time = fields.Time(required=True)
    timezone = Text(64, 1, required=True, metadata={"example": "Europe/Berlin"})
    online = fields.Boolean(load_default=True)
    location = Text(200, allow_none=True)
    trainer = Text(200, allow_none=True)
    # A number in the document (a string such as "1290.00" is taken too).
    # A number (a string such as "1290.00" is taken too). The range is not a
    # validate.Range: apispec would write a Decimal's bounds as strings.
    price = fields.Decimal(
        places=2,
        allow_none=True,
        validate=_price_in_range,
        metadata={"description": f"from 0 to {MAX_PRICE}"},
    )
    currency = Text(3, 3, load_default="EUR")
    seats = fields.Integer(allow_none=True, validate=validate.Range(min=0, max=10_000))
    seats_taken = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_INT))
    registration_url = Text(500, allow_none=True)
    status = fields.Enum(ClassStatus, by_value=True, load_default=ClassStatus.SCHEDULED)


class ClassChangesSchema(ClassInputSchema):
    """Some of a class's fields: the others keep their values."""

    def __init__(self, **kwargs):
        super().__init__(partial=True, **kwargs)


class ClassListSchema(ma.Schema):
    classes = fields.List(fields.Nested(ClassSchema), required=True)


# --- Announcements and the outbox


class ProgressSchema(ma.Schema):
    total = fields.Integer(required=True)
    done = fields.Integer(required=True)
    queued = fields.Integer(required=True)
    sending = fields.Integer(required=True)
    sent = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    skipped = fields.Integer(required=True)
    cancelled = fields.Integer(required=True)
    held = fields.Integer(required=True)


class AnnouncementSchema(ma.Schema):
    id = fields.String(attribute="public_id", required=True)
    subject = fields.String(required=True)
    topic = fields.String(required=True)
    status = fields.Enum(AnnouncementStatus, by_value=True, required=True)
    send_at = fields.AwareDateTime(allow_none=True, required=True)
    recipients = fields.Integer(allow_none=True, required=True)
    created_at = fields.AwareDateTime(required=True)
    fanned_out_at = fields.AwareDateTime(allow_none=True, required=True)
    finished_at = fields.AwareDateTime(allow_none=True, required=True)
    failure = fields.String(allow_none=True, required=True)


class AnnouncementListSchema(ma.Schema):
    announcements = fields.List(fields.Nested(AnnouncementSchema), required=True)


class OutboxStatusSchema(ma.Schema):
    counts = fields.Dict(
        keys=fields.String(validate=validate.OneOf([s.value for s in OutboxStatus])),
        values=fields.Integer(),
        required=True,
    )
    oldest_due_seconds = fields.Float(
        allow_none=True,
        required=True,
        metadata={"description": "how long the oldest mail due has waited"},
    )
