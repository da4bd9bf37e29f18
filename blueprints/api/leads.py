"""/api/v1/leads: the lead browser's list, one lead, signup through the
public form's service, topics, unsubscribe and erasure."""

from __future__ import annotations

from dataclasses import replace

from flask import abort, current_app
from marshmallow import RAISE

from blueprints.api import invalid, problems
from blueprints.api.auth import api_blueprint, current_token, record, requires
from blueprints.api.schemas import (
    AcceptedSchema,
    LeadPageSchema,
    LeadQuerySchema,
    LeadSchema,
    SubscribeSchema,
    TopicsResultSchema,
    TopicsSchema,
)
from blueprints.subscriptions.base import evidence
from extensions import db, limiter
from models import Lead, TokenScope
from services.leads import privacy, signup, subscriptions
from services.leads.addresses import InvalidAddress, normalise
from services.reporting import lead_query

bp = api_blueprint("api-leads", __name__, "Leads: list, read, subscribe, change, erase.")

# Consent evidence and the funnel tell API signups from the site's forms by these.
CHANNEL = "api"
PLACEMENT = "api"


def _lead(public_id: str) -> Lead:
    return subscriptions.lead_by_public_id(public_id) or abort(404, "No lead has this id.")


def _evidence() -> subscriptions.Evidence:
    return replace(evidence(), api_token_id=current_token().id)


@bp.get("/leads")
@requires(TokenScope.READ)
# An unknown parameter is refused, not ignored: a typo must not widen the list.
@bp.arguments(LeadQuerySchema, location="query", unknown=RAISE)
@bp.response(200, LeadPageSchema)
@problems(bp, 422)
def list_leads(args: dict):
    """Leads, filtered as in the lead browser

    A page at a time, newest first unless `sort` says otherwise; pass a
    page's `next_cursor` as `cursor` for the next one."""
    raw = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in args.items()}
    try:
        filters = lead_query.LeadFilters.parse(raw)
        page = lead_query.page(filters, args.get("cursor") or None, per_page=args["limit"])
    except lead_query.FilterError as exc:
        message = str(exc)
        field = message.partition(":")[0]  # "status: one of ..."
        if field not in LeadQuerySchema().fields:  # the cursor, or since after until
            field = "cursor" if message == lead_query.BROKEN_CURSOR else "since"
        invalid(field, message)
    return {
        "leads": page.leads,
        "next_cursor": page.next_cursor,
        "total": page.total,
        "total_capped": page.total_capped,
    }


@bp.get("/leads/<public_id>")
@requires(TokenScope.READ)
@bp.response(200, LeadSchema)
@problems(bp, 404)
def get_lead(public_id: str):
    """One lead, by its id."""
    return _lead(public_id)


@bp.post("/subscribe")
@requires(TokenScope.WRITE)
# As the signup form's, per address; and still counted in the token's limit.
@limiter.limit(lambda: current_app.config["SIGNUP_RATE_LIMIT"], override_defaults=False)
@bp.arguments(SubscribeSchema)
@bp.response(202, AcceptedSchema)
@problems(bp, 400, 413, 415, 422)
def subscribe(args: dict):
    """Subscribe someone (double opt-in)

    As the site's signup form: the person gets a mail to confirm (at most
    one per address per window), and the consent text, the caller's address
    and user agent and the token are kept as evidence. The answer is the
    same whether the address was new, pending or confirmed."""
    try:
        email = normalise(args["email"], current_app.config["MAIL_CHECK_DELIVERABILITY"])
    except InvalidAddress as exc:
        invalid("email", str(exc))
    signup.subscribe(
        signup.SignupRequest(
            email=email,
            topics=args["topics"],
            placement=PLACEMENT,
            name=(args.get("name") or "").strip() or None,
            referrer=args.get("source_url"),
            consent_text=args["consent_text"],
            channel=CHANNEL,
        ),
        _evidence(),
    )
    # The audit log names the lead like every other lead entry (staff only see it).
    lead = subscriptions.lead_by_email(email, with_topics=False)
    record("lead.subscribe", lead.public_id if lead else None, topics=args["topics"])
    db.session.commit()
    return {"accepted": True}


@bp.put("/leads/<public_id>/topics")
@requires(TokenScope.WRITE)
@bp.arguments(TopicsSchema)
@bp.response(200, TopicsResultSchema)
@problems(bp, 400, 404, 413, 415, 422)
def set_topics(args: dict, public_id: str):
    """Set the topics a lead hears about

    As on its preferences page: no topic left unsubscribes; an unsubscribed
    lead given topics must confirm again."""
    lead = _lead(public_id)
    result = subscriptions.update_topics(lead, args["topics"], _evidence(), channel=CHANNEL)
    record("lead.topics", lead.public_id, topics=args["topics"], result=result.value)
    db.session.commit()
    return {"result": result.value, "lead": lead}


@bp.post("/leads/<public_id>/unsubscribe")
@requires(TokenScope.WRITE)
@bp.response(200, LeadSchema)
@problems(bp, 404, 413, 415)
def unsubscribe(public_id: str):
    """Withdraw the lead's consent for everything (idempotent)."""
    lead = _lead(public_id)
    if subscriptions.unsubscribe(lead, CHANNEL, _evidence()):
        record("lead.unsubscribe", lead.public_id)
    db.session.commit()
    return lead


@bp.delete("/leads/<public_id>")
@requires(TokenScope.WRITE)
@bp.response(204)
@problems(bp, 404, 413, 415)
def erase(public_id: str):
    """Erase a lead and its mail

    Only a hash of the address stays, on the suppression list, so it is
    never mailed again unless it subscribes anew."""
    lead = _lead(public_id)
    privacy.erase(lead)
    record("lead.erase", public_id)
    db.session.commit()
    return None
