"""Nobody learns from the signup form whether an address is on the list.

New, pending, confirmed, unsubscribed and erased addresses get the same
status, the same headers, the same redirect and the same page, and the time
to answer does not tell them apart: the mail each one calls for is an outbox
row written in the same transaction, sent later by the worker, never in the
request. The same holds for staff sign-in: an unknown address, a wrong
password and a disabled account answer alike, in the same time.
"""

from __future__ import annotations

import random
import re
import statistics
import time

import pytest
from sqlalchemy import func, select

from extensions import db
from models import MailKind, OutboxMessage, OutboxStatus, Role
from services.leads import privacy, signup, subscriptions
from services.leads.signup import SignupRequest
from services.leads.subscriptions import Evidence
from services.staff import auth
from tests.helpers import PASSWORD, add_user, browser_headers, csrf_token, form_fields

ARTICLE = "/cspo-certification-benefits"
SAMPLES = 30
GROUPS = ("new", "pending", "confirmed", "unsubscribed", "erased")
# The login page's CSRF token differs per session.
_TOKENS = re.compile(r'name="csrf_token"[^>]*?value="[^"]*"')
# Headers whose values change from one request to the next, whoever asks.
VOLATILE = {"Date", "Set-Cookie", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"}


def medians_close(medians: dict[str, float], rel: float, abs_s: float) -> tuple[bool, str]:
    low, high = min(medians.values()), max(medians.values())
    shown = ", ".join(f"{k} {v * 1000:.2f} ms" for k, v in medians.items())
    return high - low <= max(rel * low, abs_s), shown


@pytest.fixture
def app_config(app_config):
    return {**app_config, "LOGIN_RATE_LIMIT": "100000 per minute"}


def _existing(app, n: int) -> dict[str, list[str]]:
    """n addresses in each state, made through the services as a visitor's
    own clicks would make them (the window of their first mail is open)."""
    out = {g: [f"{g}{i:02d}@example.com" for i in range(n)] for g in GROUPS}
    with app.app_context():
        for group in ("pending", "confirmed", "unsubscribed", "erased"):
            for email in out[group]:
                signup.subscribe(
                    SignupRequest(email=email, topics=["newsletter"], placement="page"),
                    Evidence(),
                )
                lead = subscriptions.lead_by_email(email)
                if group in ("confirmed", "unsubscribed"):
                    subscriptions.confirm(lead, lead.created_at, Evidence())
                if group == "unsubscribed":
                    subscriptions.unsubscribe(lead, "link", Evidence())
                if group == "erased":
                    privacy.erase(lead)
        db.session.commit()
    return out


def _answer(client, fields: dict, email: str) -> tuple[float, tuple]:
    data = {**fields, "email": email, "topics": ["newsletter"], "name": ""}
    headers = browser_headers(ARTICLE)
    start = time.perf_counter()
    r = client.post("/subscribe", data=data, headers=headers)
    elapsed = time.perf_counter() - start
    follow = client.get(r.headers["Location"]) if r.status_code == 303 else None
    # No cookie, so nothing in the answer tells one visit from another.
    assert "Set-Cookie" not in r.headers
    shape = (
        r.status_code,
        r.headers.get("Location"),
        r.get_data(as_text=True),
        sorted((k, v) for k, v in r.headers.items() if k not in VOLATILE),
        follow.status_code if follow else None,
        follow.get_data(as_text=True) if follow else None,
    )
    return elapsed, shape


def _sample(app, client, samples: int) -> tuple[dict[str, list[float]], dict[str, set]]:
    emails = _existing(app, samples)
    fields = form_fields(client.get(ARTICLE).get_data(as_text=True))
    for i in range(5):  # warm up: templates compiled, connections pooled
        _answer(client, fields, f"warmup{i}@example.com")
    times: dict[str, list[float]] = {g: [] for g in GROUPS}
    shapes: dict[str, set] = {g: set() for g in GROUPS}
    rng = random.Random(7)
    # Interleaved in a shuffled order each round, so drift (another process
    # on the machine, the database growing) falls on every group alike.
    for i in range(samples):
        order = list(GROUPS)
        rng.shuffle(order)
        for group in order:
            # Spelled as a visitor might: the address is found all the same.
            email = emails[group][i]
            spelled = email.upper() if i % 3 == 0 else f" {email} "
            elapsed, shape = _answer(client, fields, spelled)
            times[group].append(elapsed)
            shapes[group].add(repr(shape))
    return times, shapes


def test_signup_answers_alike_for_every_state_of_the_address(app, client):
    samples = 10
    _, shapes = _sample(app, client, samples)
    everything = set().union(*shapes.values())
    assert len(everything) == 1, {g: len(s) for g, s in shapes.items()}
    (shape,) = everything
    assert shape.startswith("(303, '/subscribe/thanks'")

    # The work did differ, behind the same answer: new, unsubscribed and
    # erased addresses were queued a confirmation, the others nothing more.
    with app.app_context():
        confirmations = db.session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                OutboxMessage.kind == MailKind.CONFIRMATION,
                OutboxMessage.status != OutboxStatus.SKIPPED,
            )
        )
    # Warm-ups; the set-up mails of pending, confirmed and unsubscribed leads
    # (an erased lead's go with it); then new, unsubscribed and erased ones.
    assert confirmations == 5 + 3 * samples + 3 * samples


def test_signup_answer_time_does_not_tell_the_states_apart(app, client):
    times, _ = _sample(app, client, SAMPLES)
    medians = {g: statistics.median(t) for g, t in times.items()}
    ok, shown = medians_close(medians, rel=0.25, abs_s=0.004)
    print(f"signup medians: {shown}")
    assert ok, f"median answer times tell the groups apart: {shown}"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sign_in_answers_alike_for_unknown_wrong_and_disabled(app, client):
    """Each attempt costs one argon2id verification, whatever the address:
    an unknown one is checked against a dummy hash."""
    add_user(app, "staff@example.com", Role.MARKETER)
    add_user(app, "disabled@example.com", Role.MARKETER)
    with app.app_context():
        auth.set_active(auth.user_by_email("disabled@example.com"), False)
        db.session.commit()
    cases = {
        "unknown": ("nobody@example.com", PASSWORD),
        "wrong password": ("staff@example.com", "not the password at all"),
        "disabled": ("disabled@example.com", PASSWORD),
    }
    token = csrf_token(client)
    times: dict[str, list[float]] = {k: [] for k in cases}
    pages: set[str] = set()
    for _ in range(8):
        for label, (email, password) in cases.items():
            start = time.perf_counter()
            r = client.post(
                "/login", data={"email": email, "password": password, "csrf_token": token}
            )
            times[label].append(time.perf_counter() - start)
            assert r.status_code == 401, label
            page = _TOKENS.sub("TOKEN", r.get_data(as_text=True))
            pages.add(page.replace(f'value="{email}"', 'value="EMAIL"'))
    assert len(pages) == 1
    medians = {k: statistics.median(v) for k, v in times.items()}
    ok, shown = medians_close(medians, rel=0.25, abs_s=0.01)
    print(f"sign-in medians: {shown}")
    assert ok, f"median sign-in times tell the cases apart: {shown}"
