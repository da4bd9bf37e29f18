"""API rate limits: per token, and the signup form's limit per address on
subscribe (the API never goes around the rules the forms follow)."""

from __future__ import annotations

import pytest

from models import Lead
from tests.factories import make_api_token
from tests.helpers import count

SIGNUP = {"email": "ann@example.com", "consent_text": "Yes, mail me.", "topics": ["newsletter"]}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def app_config(app_config):
    return {**app_config, "SIGNUP_RATE_LIMIT": "2 per minute", "API_RATE_LIMIT": "6 per minute"}


def test_limits_hold_per_token_and_signups_keep_the_forms_limit(app, client):
    with app.app_context():
        writer = make_api_token("writer@example.com")
        other = make_api_token("other@example.com")
    for i in range(2):
        body = {**SIGNUP, "email": f"p{i}@example.com"}
        assert (
            client.post("/api/v1/subscribe", json=body, headers=bearer(writer)).status_code == 202
        )
    # SIGNUP_RATE_LIMIT is per address, whatever the token.
    r = client.post("/api/v1/subscribe", json=SIGNUP, headers=bearer(other))
    assert r.status_code == 429 and r.mimetype == "application/problem+json"
    assert "2 per 1 minute" in r.get_json()["detail"]
    assert "Retry-After" in r.headers
    for _ in range(4):  # 6 per token: the 2 signups count
        assert client.get("/api/v1/classes", headers=bearer(writer)).status_code == 200
    assert client.get("/api/v1/leads", headers=bearer(writer)).status_code == 429
    assert client.get("/api/v1/leads", headers=bearer(other)).status_code == 200
    with app.app_context():
        assert count(app, Lead) == 2
