"""The API as a client meets it: a token made in the app over HTTP and used
against real gunicorn workers (on a database made by `flask db upgrade`);
and schemathesis, generating requests from our own OpenAPI document."""

from __future__ import annotations

import collections
import http.cookiejar
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from extensions import db
from models import Role, TokenScope
from tests import procs
from tests.factories import make_api_token, make_class, make_lead
from tests.helpers import CSRF_FIELD, PASSWORD, app_beside, mail_files


class Browser:
    """A staff member's browser: cookies kept, redirects followed."""

    def __init__(self, base: str):
        self.base = base
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=30) as r:
            return r.read().decode()

    def post_form(self, path: str, fields: dict) -> str:
        csrf = CSRF_FIELD.search(self.get(path)).group(1)
        data = urllib.parse.urlencode({"csrf_token": csrf, **fields}).encode()
        with self.opener.open(self.base + path, data=data, timeout=30) as r:
            return r.read().decode()


def call(base: str, method: str, path: str, token: str | None, body=None, cookies=None):
    """(status, content type, parsed JSON) of one API request."""
    headers = {"Content-Type": "application/json", "User-Agent": "crm-sync/1.0"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    opener = cookies or urllib.request.build_opener()
    try:
        with opener.open(request, timeout=30) as r:
            raw, status, kind = r.read(), r.status, r.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        raw, status, kind = exc.read(), exc.code, exc.headers.get_content_type()
    return status, kind, json.loads(raw) if raw else None


def test_a_token_made_in_the_app_drives_the_api_on_gunicorn(tmp_path, empty_db_url):
    port = procs.free_port()
    env = procs.app_env(tmp_path, empty_db_url, port=port)
    procs.flask_db_upgrade(env)
    procs.flask(
        env, "users", "create", "admin@example.com", "--role", "admin", "--password", PASSWORD
    )
    with procs.gunicorn(env, workers=2) as server:
        staff = Browser(server.url)
        staff.post_form("/login", {"email": "admin@example.com", "password": PASSWORD})
        page = staff.post_form("/account/tokens", {"name": "CRM", "scope": "write"})
        token = page.split('id="new-token" type="text" readonly value="')[1].split('"')[0]

        consent = "Yes, email me CSPO class dates."
        signup = {"email": "ann@example.com", "consent_text": consent, "topics": ["cspo-classes"]}
        assert call(server.url, "POST", "/api/v1/subscribe", token, signup) == (
            202,
            "application/json",
            {"accepted": True},
        )
        status, _, page = call(server.url, "GET", "/api/v1/leads?placement=api", token)
        assert status == 200 and [lead["email"] for lead in page["leads"]] == ["ann@example.com"]
        lead_id = page["leads"][0]["id"]
        status, _, lead = call(server.url, "GET", f"/api/v1/leads/{lead_id}", token)
        assert (status, lead["status"], lead["topics"]) == (200, "pending", ["cspo-classes"])
        # The staff session alone opens nothing: its cookies are no token.
        status, kind, problem = call(server.url, "GET", "/api/v1/leads", None, cookies=staff.opener)
        assert (status, kind, problem["status"]) == (401, "application/problem+json", 401)
        status, kind, problem = call(server.url, "POST", "/api/v1/subscribe", token, None)
        assert (status, kind) == (422, "application/problem+json")
        assert "consent_text" in problem["errors"]
        # The token page shows its last use.
        assert "never" not in staff.get("/account/tokens").split("<tbody>")[1]

    # The confirmation mail is queued like the form's, and the worker sends it.
    assert procs.worker_once(env)["sent"] == 1
    app = app_beside(env, tmp_path)
    (mail,) = mail_files(app)
    assert "To: ann@example.com" in mail.read_text()


# --- schemathesis against our own document


@pytest.fixture
def app_config(app_config):
    # Enough for every generated request: the limits have their own tests.
    return {**app_config, "API_RATE_LIMIT": "100000 per minute"}


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_keeps_its_own_document(app, mode):
    """Generated requests to every operation: no 5xx, and every answer's
    status, media type and body are the ones the document gives."""
    with app.app_context():
        secret = make_api_token("fuzz@example.com", Role.ADMIN, TokenScope.WRITE)
        make_lead("lead@example.com")
        make_class()
        db.session.commit()
    headers = {"Authorization": f"Bearer {secret}"}
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 13
    calls = []

    for operation in operations:

        @settings(
            max_examples=12,
            derandomize=True,  # the same requests on every run
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case):
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            calls.append(response.status_code)

        run()
    seen = collections.Counter(status // 100 for status in calls)
    # Answers of both kinds were checked against the document, none a 5xx.
    assert seen[2] >= 13 if mode == GenerationMode.POSITIVE else seen[4] >= 13 * 3
    assert seen[4] and not seen[5]
