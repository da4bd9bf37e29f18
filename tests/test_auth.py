"""Staff sign-in: passwords, sessions, next=, sign-out, disabled accounts,
argon2id parameters and their upgrade, `flask users create`.

The staff helpers (sign_in_as, csrf_token) are in tests/helpers.py.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urljoin, urlsplit

import pytest
from argon2 import PasswordHasher

from extensions import db
from models import AuditEvent, Role, User
from services.staff import auth
from tests.helpers import (
    CSRF_FIELD,
    PASSWORD,
    add_user,
    base_config,
    csrf_token,
    sign_in,
    sign_in_as,
)

STRONG_PARAMS = "m=65536,t=3,p=4"
WRONG_CREDENTIALS = "That email and password do not match an active account."


def login(client, email: str, password: str, next_: str | None = None):
    token = csrf_token(client)
    url = "/login" if next_ is None else f"/login?next={quote(next_, safe='')}"
    return client.post(url, data={"email": email, "password": password, "csrf_token": token})


def lands_on_site(location: str, site: str = "http://localhost/login") -> bool:
    """Where a browser goes with this Location: browsers drop tabs and
    newlines and read a backslash as a slash in http(s) URLs."""
    cleaned = re.sub(r"[\t\r\n]", "", location).replace("\\", "/")
    target = urlsplit(urljoin(site, cleaned))
    return target.scheme == "http" and target.netloc == "localhost"


@pytest.fixture
def app_config(app_config):
    # Most tests here sign in a few times; the limit has its own tests.
    return {**app_config, "LOGIN_RATE_LIMIT": "1000 per minute"}


@pytest.fixture
def marketer(app) -> str:
    add_user(app, "marketer@example.com", Role.MARKETER)
    return "marketer@example.com"


# --- Signing in.


def test_right_password_goes_to_the_dashboard_with_a_fresh_session(app, client, marketer):
    client.get("/login")
    with client.session_transaction() as session:
        session["planted"] = "by someone before sign-in"
    before = client.get_cookie("session").value

    r = login(client, marketer, PASSWORD)

    assert r.status_code == 303
    assert r.headers["Location"] == "/marketing/"
    after = client.get_cookie("session").value
    assert after != before
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["_user_id"].startswith(str(db_user(app, marketer).id) + ":"), (
            "the session id carries the per-user session token"
        )
    assert client.get("/marketing/").status_code == 200
    with app.app_context():
        assert db_user(app, marketer).last_login_at is not None


def db_user(app, email: str) -> User:
    with app.app_context():
        user = auth.user_by_email(email)
        db.session.expunge(user)
        return user


def test_safe_next_is_followed(client, marketer):
    r = login(client, marketer, PASSWORD, next_="/marketing/leads?status=confirmed&q=an")
    assert r.status_code == 303
    assert r.headers["Location"] == "/marketing/leads?status=confirmed&q=an"


def test_email_is_matched_case_insensitively(client, marketer):
    assert login(client, "  Marketer@Example.COM ", PASSWORD).status_code == 303


def test_wrong_password_and_unknown_email_get_the_same_answer(client, marketer):
    wrong = login(client, marketer, "not the password at all")
    unknown = login(client, "nobody@example.com", "not the password at all")

    for r in (wrong, unknown):
        assert r.status_code == 401
        assert WRONG_CREDENTIALS in r.get_data(as_text=True)

    def normalised(r, email):
        html = r.get_data(as_text=True)
        html = CSRF_FIELD.sub("csrf", html)
        return html.replace(f'value="{email}"', 'value="EMAIL"')

    assert normalised(wrong, marketer) == normalised(unknown, "nobody@example.com")
    assert client.get("/marketing/").status_code == 302


def test_a_disabled_account_cannot_sign_in_and_is_told_nothing_more(app, client, marketer):
    with app.app_context():
        auth.set_active(auth.user_by_email(marketer), False)
        db.session.commit()
    r = login(client, marketer, PASSWORD)
    assert r.status_code == 401
    assert WRONG_CREDENTIALS in r.get_data(as_text=True)


def test_empty_form_is_400_with_field_errors_not_a_500(client):
    token = csrf_token(client)
    r = client.post("/login", data={"csrf_token": token, "email": "", "password": ""})
    assert r.status_code == 400
    assert "field-errors" in r.get_data(as_text=True)


def test_login_without_csrf_token_is_refused(client, marketer):
    client.get("/login")
    r = client.post("/login", data={"email": marketer, "password": PASSWORD})
    assert r.status_code == 400
    assert client.get("/marketing/").status_code == 302


OFFSITE_NEXT = [
    "//evil.example",
    "//evil.example/marketing/",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "https://evil.example",
    "http://localhost.evil.example/",
    "https:evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "/%2F%2Fevil.example",
    "%2F%2Fevil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    " //evil.example",
    "evil.example",
    "/" + "a" * 600,
]


@pytest.mark.parametrize("target", OFFSITE_NEXT)
def test_safe_next_refuses_or_keeps_local(target):
    result = auth.safe_next(target)
    assert result is None or lands_on_site(result), result


def test_next_never_leads_off_site(client, marketer):
    # One real sign-in with a hostile next=, then the signed-in GET /login
    # path, which honours next= the same way, for every other value.
    r = login(client, marketer, PASSWORD, next_=OFFSITE_NEXT[0])
    assert r.status_code == 303
    assert r.headers["Location"] == "/marketing/"
    for target in OFFSITE_NEXT:
        r = client.get(f"/login?next={quote(target, safe='')}")
        assert r.status_code in (302, 303), target
        location = r.headers["Location"]
        assert lands_on_site(location), f"next={target!r} led to {location!r}"


# --- Signing out, and being signed out.


def test_logout_is_post_only(app, client):
    sign_in_as(app, client)
    assert client.get("/logout").status_code == 405
    assert client.get("/marketing/").status_code == 200, "a GET must not sign anyone out"

    token = csrf_token(client, "/marketing/")
    r = client.post("/logout", data={"csrf_token": token})
    assert r.status_code == 303
    assert r.headers["Location"] == "/login"
    r = client.get("/marketing/")
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/login?next=")


def test_logout_without_csrf_token_keeps_the_session(app, client):
    sign_in_as(app, client)
    assert client.post("/logout").status_code == 400
    assert client.get("/marketing/").status_code == 200


def test_disabling_a_user_signs_them_out_on_the_next_request(app, client):
    sign_in_as(app, client)
    assert client.get("/marketing/leads").status_code == 200
    with app.app_context():
        auth.set_active(auth.user_by_email("marketer@example.com"), False)
        db.session.commit()
    r = client.get("/marketing/leads")
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/login?next=")


def test_a_password_change_signs_out_other_sessions(app, client):
    sign_in_as(app, client)
    with app.app_context():
        auth.set_password(auth.user_by_email("marketer@example.com"), "a brand new passphrase")
        db.session.commit()
    assert client.get("/marketing/").status_code == 302


def test_a_forged_session_id_without_the_token_is_anonymous(app, client):
    user_id = add_user(app)
    sign_in(client, user_id.split(":")[0])  # the row id alone
    assert client.get("/marketing/").status_code == 302
    sign_in(client, user_id.split(":")[0] + ":guessed")
    assert client.get("/marketing/").status_code == 302


# --- Password hashing.


def test_hash_is_argon2id_with_strong_parameters(app, marketer):
    stored = db_user(app, marketer).password_hash
    assert stored.startswith("$argon2id$")
    assert f"${STRONG_PARAMS}$" in stored
    assert PASSWORD not in stored


def test_weak_hash_is_upgraded_at_the_next_sign_in(app, client, marketer):
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with app.app_context():
        auth.user_by_email(marketer).password_hash = weak
        db.session.commit()

    assert login(client, marketer, PASSWORD).status_code == 303

    upgraded = db_user(app, marketer).password_hash
    assert upgraded != weak
    assert upgraded.startswith("$argon2id$")
    assert f"${STRONG_PARAMS}$" in upgraded
    PasswordHasher().verify(upgraded, PASSWORD)


def test_a_wrong_password_does_not_touch_a_weak_hash(app, client, marketer):
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with app.app_context():
        auth.user_by_email(marketer).password_hash = weak
        db.session.commit()
    assert login(client, marketer, "not the password at all").status_code == 401
    assert db_user(app, marketer).password_hash == weak


# --- Login limits in one process (across processes: test_login_limits_redis).


def test_login_attempts_are_limited(tmp_path):
    # Limits do not depend on the database: SQLite only.
    from app import create_app

    app = create_app(
        {
            **base_config(tmp_path),
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'limits.sqlite3'}",
            "LOGIN_RATE_LIMIT": "3 per minute",
        }
    )
    with app.app_context():
        db.create_all()
    client = app.test_client()
    codes = [login(client, "nobody@example.com", "wrong password!").status_code for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    r = login(client, "nobody@example.com", "wrong password!")
    assert "Too many attempts" in r.get_data(as_text=True)
    # X-Forwarded-For is not trusted without TRUSTED_PROXY_COUNT: a spoofed
    # header does not buy a fresh per-IP allowance.
    token = csrf_token(client)
    r = client.post(
        "/login",
        data={"email": "other@example.com", "password": "wrong password!", "csrf_token": token},
        headers={"X-Forwarded-For": "198.51.100.7"},
    )
    assert r.status_code == 429
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


# --- flask users create.


def test_users_create_with_password_option(app, runner):
    result = runner.invoke(
        args=["users", "create", "New.Admin@Example.com", "--role", "admin", "--password", PASSWORD]
    )
    assert result.exit_code == 0, result.output
    assert "Created admin new.admin@example.com" in result.output
    user = db_user(app, "new.admin@example.com")
    assert user.role == Role.ADMIN
    assert user.active
    assert user.password_hash.startswith("$argon2id$")
    with app.app_context():
        assert auth.authenticate("new.admin@example.com", PASSWORD) is not None
        db.session.rollback()


def test_users_create_prompts_twice(app, runner):
    result = runner.invoke(
        args=["users", "create", "m2@example.com", "--role", "marketer"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("Password") >= 1
    assert "Repeat for confirmation" in result.output
    assert PASSWORD not in result.output, "the prompt must not echo the password"
    assert db_user(app, "m2@example.com").role == Role.MARKETER


def test_users_create_refuses_a_short_password_clearly(app, runner):
    result = runner.invoke(
        args=["users", "create", "m3@example.com", "--role", "marketer"], input="pw\npw\n"
    )
    assert result.exit_code == 1
    assert "Use at least 12 characters." in result.output
    with app.app_context():
        assert auth.user_by_email("m3@example.com") is None


def test_users_create_refuses_mismatched_prompts(app, runner):
    result = runner.invoke(
        args=["users", "create", "m4@example.com", "--role", "marketer"],
        input=f"{PASSWORD}\nsomething else entirely\n",
    )
    assert result.exit_code != 0
    assert "do not match" in result.output
    with app.app_context():
        assert auth.user_by_email("m4@example.com") is None


def test_users_create_refuses_duplicates_bad_addresses_and_roles(app, runner, marketer):
    dup = runner.invoke(
        args=["users", "create", marketer.upper(), "--role", "admin", "--password", PASSWORD]
    )
    assert dup.exit_code == 1
    assert "exists already" in dup.output
    bad = runner.invoke(
        args=["users", "create", "not-an-address", "--role", "admin", "--password", PASSWORD]
    )
    assert bad.exit_code == 1
    assert "Error:" in bad.output
    role = runner.invoke(
        args=["users", "create", "x@example.com", "--role", "owner", "--password", PASSWORD]
    )
    assert role.exit_code == 2
    assert "owner" in role.output
    with app.app_context():
        assert db.session.query(User).count() == 1
        assert db.session.query(AuditEvent).count() == 0
