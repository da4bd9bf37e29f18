"""Settings are parsed and checked in Config at start-up: a bad value stops the
app with a message naming the setting and the value."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app import create_app
from config import Config, ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def settings(tmp_path, **environ) -> dict:
    return Config.from_env(str(tmp_path), environ)


def test_defaults_are_the_embedded_mode(tmp_path):
    cfg = settings(tmp_path)
    assert cfg["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'leads.sqlite3'}"
    assert cfg["SITE_URL"] == "http://127.0.0.1:5000"
    assert cfg["PORT"] == 5000
    assert cfg["LOG_LEVEL"] == "INFO"
    assert cfg["MAIL_BACKEND"] == "file"
    assert cfg["MAIL_PORT"] == 25
    assert cfg["MAIL_USE_TLS"] is False
    assert cfg["MAIL_TIMEOUT"] == 30.0
    assert cfg["CLASS_REMINDER_DAYS"] == [21, 7]
    assert cfg["EMBED_ALLOWED_ORIGINS"] == []
    assert cfg["SECRET_KEY_FALLBACKS"] == []
    assert os.path.isdir(cfg["CONTENT_DIR"])
    # No bounce address: the envelope sender is the From address.
    assert cfg["MAIL_BOUNCE_ADDRESS"] is None
    assert (cfg["BOUNCE_SOFT_LIMIT"], cfg["BOUNCE_SOFT_DAYS"]) == (3, 30)
    assert cfg["IMPORT_MAX_BYTES"] == 100 * 1024 * 1024


def test_good_values_are_parsed(tmp_path):
    content = tmp_path / "articles"
    content.mkdir()
    cfg = settings(
        tmp_path,
        PORT="8080",
        LOG_LEVEL="warning",
        MAIL_BACKEND="SMTP",
        MAIL_PORT=" 587 ",
        MAIL_USE_TLS="yes",
        MAIL_USE_SSL="off",
        MAIL_TIMEOUT="2.5",
        WORKER_RATE_PER_SECOND="0",
        CLASSES_FOLLOWUP_DAYS="-1",
        CLASS_REMINDER_DAYS=" 7, 30,21,7 ",
        SIGNUP_RATE_LIMIT="20/minute;200 per day",
        SECRET_KEY_FALLBACKS="old-key, older-key,",
        DATABASE_URL="postgres://u:p@db.example/leads",
        CONTENT_DIR=str(content),
        MAX_CONTENT_LENGTH="131072",
        IMPORT_MAX_BYTES="1048576",
    )
    assert cfg["PORT"] == 8080
    assert cfg["SITE_URL"] == "http://127.0.0.1:8080"  # follows PORT
    assert cfg["LOG_LEVEL"] == "WARNING"
    assert cfg["MAIL_BACKEND"] == "smtp"
    assert cfg["MAIL_PORT"] == 587
    assert (cfg["MAIL_USE_TLS"], cfg["MAIL_USE_SSL"]) == (True, False)
    assert cfg["MAIL_TIMEOUT"] == 2.5
    assert cfg["WORKER_RATE_PER_SECOND"] == 0.0
    assert cfg["CLASSES_FOLLOWUP_DAYS"] == -1
    assert cfg["CLASS_REMINDER_DAYS"] == [30, 21, 7]
    assert cfg["SIGNUP_RATE_LIMIT"] == "20/minute;200 per day"
    assert cfg["SECRET_KEY_FALLBACKS"] == ["old-key", "older-key"]
    assert cfg["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@db.example/leads"
    assert cfg["CONTENT_DIR"] == str(content)
    assert cfg["MAX_CONTENT_LENGTH"] == 131072
    assert cfg["IMPORT_MAX_BYTES"] == 1048576


def test_blank_values_mean_the_default_and_blank_reminder_days_none(tmp_path):
    cfg = settings(tmp_path, MAIL_PORT="", MAIL_USE_SSL=" ", SITE_URL="", CLASS_REMINDER_DAYS="")
    assert cfg["MAIL_PORT"] == 25
    assert cfg["MAIL_USE_SSL"] is False
    assert cfg["SITE_URL"] == "http://127.0.0.1:5000"
    assert cfg["CLASS_REMINDER_DAYS"] == []


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("CLASS_REMINDER_DAYS", "21,x", "a list of whole days such as 21,7"),
        ("CLASS_REMINDER_DAYS", "21,0", "a list of whole days such as 21,7"),
        ("CLASS_REMINDER_DAYS", "-7", "a list of whole days such as 21,7"),
        ("MAIL_PORT", "abc", "a whole number from 1 to 65535"),
        ("MAIL_PORT", "70000", "a whole number from 1 to 65535"),
        ("PORT", "http", "a whole number from 1 to 65535"),
        ("WORKER_BATCH_SIZE", "0", "a whole number of at least 1"),
        ("WORKER_CONNECTIONS", "2.5", "a whole number of at least 1"),
        ("MAIL_MAX_ATTEMPTS", "eight", "a whole number of at least 1"),
        ("CLASSES_FOLLOWUP_DAYS", "-2", "a whole number of at least -1"),
        ("TRUSTED_PROXY_COUNT", "one", "a whole number of at least 0"),
        ("MAX_CONTENT_LENGTH", "64k", "a whole number of at least 1"),
        ("IMPORT_MAX_BYTES", "100MB", "a whole number of at least 1"),
        ("MAIL_TIMEOUT", "soon", "a number of at least 0.1 such as 30"),
        ("MAIL_TIMEOUT", "0", "a number of at least 0.1 such as 30"),
        ("WORKER_POLL_SECONDS", "inf", "a number of at least 0 such as 1"),
        ("FORM_MIN_SECONDS", "-1", "a number of at least 0 such as 2"),
        ("WORKER_PLAN_SECONDS", "nan", "a number of at least 0 such as 15"),
        ("VIEW_FLUSH_SECONDS", "5s", "a number of at least 0 such as 5"),
        ("MAIL_USE_TLS", "maybe", "one of true, false, yes, no, on, off, 1, 0"),
        ("MAIL_CHECK_DELIVERABILITY", "2", "one of true, false, yes, no, on, off, 1, 0"),
        ("MAIL_BACKEND", "sendgrid", "one of file, smtp, console"),
        ("LOG_LEVEL", "loud", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("SIGNUP_RATE_LIMIT", "lots", "a rate limit such as 10 per minute"),
        ("LOGIN_RATE_LIMIT", "5 per fortnight", "a rate limit such as 5 per minute"),
        ("SITE_URL", "www.example.com", "an absolute URL such as https://www.example.com"),
        ("SITE_URL", "ftp://example.com", "an absolute URL such as https://www.example.com"),
        ("BOUNCE_SOFT_LIMIT", "0", "a whole number of at least 1"),
        ("BOUNCE_SOFT_DAYS", "a month", "a whole number of at least 1"),
        ("WEBHOOK_DISABLE_AFTER_DAYS", "0", "a whole number of at least 1"),
        ("WEBHOOK_TIMEOUT", "0", "a number of at least 0.1 such as 10"),
        ("WEBHOOK_ALLOW_PRIVATE_TARGETS", "sure", "one of true, false, yes, no, on, off, 1, 0"),
    ],
)
def test_a_bad_value_is_named_with_its_setting(tmp_path, name, value, expected):
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, **{name: value})
    assert str(caught.value) == f'{name}: "{value}" is not {expected}'


def test_a_bad_origin_is_named(tmp_path):
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, EMBED_ALLOWED_ORIGINS="https://ok.example, partner.example")
    assert str(caught.value) == (
        'EMBED_ALLOWED_ORIGINS: "partner.example" is not an origin such as https://partner.example'
    )


@pytest.mark.parametrize("url", ["not a url", "postgresql://user:s3cret@db:port/leads"])
def test_a_bad_database_url_is_named_but_not_echoed(tmp_path, url):
    # It may hold a password.
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, DATABASE_URL=url)
    assert str(caught.value) == (
        "DATABASE_URL is not a database URL such as postgresql://user:password@host/dbname"
    )


def test_a_content_dir_that_does_not_exist(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=f'CONTENT_DIR: "{missing}" is not a directory'):
        settings(tmp_path, CONTENT_DIR=str(missing))


def test_tls_and_ssl_together_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="MAIL_USE_TLS and MAIL_USE_SSL are both on"):
        settings(tmp_path, MAIL_USE_TLS="1", MAIL_USE_SSL="1")


def test_a_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_a_bad_setting_stops_create_app(monkeypatch, tmp_path):
    monkeypatch.setenv("CLASS_REMINDER_DAYS", "21,x")
    with pytest.raises(ConfigError, match="CLASS_REMINDER_DAYS"):
        create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.db"})


def test_the_flask_cli_shows_a_bad_setting_in_one_line(tmp_path):
    env = {
        **os.environ,
        "SECRET_KEY": "cli-test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}",
        "MAIL_PORT": "abc",
    }
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == 'Error: MAIL_PORT: "abc" is not a whole number from 1 to 65535'


def test_a_lease_shorter_than_one_send_stops_the_worker(tmp_path):
    from services.delivery.worker import Worker

    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.db",
            "WORKER_LEASE_SECONDS": 10,
            "MAIL_TIMEOUT": 30,
        }
    )
    with pytest.raises(ConfigError, match=r"WORKER_LEASE_SECONDS \(10\) must be longer"):
        Worker(app)


@pytest.mark.parametrize(
    "value", ["https://leads.example.com", "leads.example.com:443", "bad host", "a..b", "*.x.com"]
)
def test_a_bad_trusted_host_stops_the_app(tmp_path, value):
    expected = re.escape(f'TRUSTED_HOSTS: "{value}" is not a host name')
    with pytest.raises(ConfigError, match=expected):
        Config.from_env(str(tmp_path), {"TRUSTED_HOSTS": f"ok.example, {value}"})


def test_trusted_hosts_are_read_lower_cased(tmp_path):
    cfg = Config.from_env(str(tmp_path), {"TRUSTED_HOSTS": " WWW.Example.com, .example.net ,"})
    assert cfg["TRUSTED_HOSTS"] == ["www.example.com", ".example.net"]
    assert Config.from_env(str(tmp_path), {})["TRUSTED_HOSTS"] == []


# --- DKIM: all three settings or none; a domain, a selector, a usable key.


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory) -> str:
    from services.mail.dkim import generate_key

    path = tmp_path_factory.mktemp("dkim") / "s1.pem"
    generate_key(path)
    return str(path)


def dkim_env(key_file: str, **overrides) -> dict:
    return {
        "DKIM_DOMAIN": "Example.COM.",
        "DKIM_SELECTOR": "s1",
        "DKIM_PRIVATE_KEY_FILE": key_file,
        **overrides,
    }


def test_dkim_settings_are_read_together(tmp_path, dkim_key):
    cfg = settings(tmp_path, **dkim_env(dkim_key))
    assert (cfg["DKIM_DOMAIN"], cfg["DKIM_SELECTOR"]) == ("example.com", "s1")
    assert cfg["DKIM_PRIVATE_KEY_FILE"] == dkim_key
    unset = settings(tmp_path, DKIM_DOMAIN=" ", DKIM_SELECTOR="", DKIM_PRIVATE_KEY_FILE="")
    assert [unset[n] for n in ("DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_PRIVATE_KEY_FILE")] == [
        None,
        None,
        None,
    ]


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"DKIM_DOMAIN": "example.com"}, "DKIM_SELECTOR, DKIM_PRIVATE_KEY_FILE"),
        ({"DKIM_DOMAIN": "example.com", "DKIM_SELECTOR": "s1"}, "DKIM_PRIVATE_KEY_FILE"),
        ({"DKIM_PRIVATE_KEY_FILE": "key.pem"}, "DKIM_DOMAIN, DKIM_SELECTOR"),
    ],
)
def test_dkim_settings_go_together(tmp_path, given, missing):
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, **given)
    assert str(caught.value) == (
        f"{missing} not set: DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY_FILE go together "
        "(all three to sign mail, or none)"
    )


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DKIM_DOMAIN", "localhost", "is not a domain such as example.com"),
        ("DKIM_DOMAIN", "https://example.com", "is not a domain such as example.com"),
        ("DKIM_DOMAIN", "exa mple.com", "is not a domain such as example.com"),
        ("DKIM_DOMAIN", "-bad.example.com", "is not a domain such as example.com"),
        ("DKIM_DOMAIN", "bücher.example", "is not a domain such as example.com"),
        ("DKIM_SELECTOR", "s1._domainkey", "is not a selector such as s2026"),
        ("DKIM_SELECTOR", "s 1", "is not a selector such as s2026"),
    ],
)
def test_a_bad_dkim_domain_or_selector_is_named(tmp_path, dkim_key, name, value, expected):
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, **dkim_env(dkim_key, **{name: value}))
    assert str(caught.value).startswith(f'{name}: "{value}" {expected}')


DAMAGED = b"-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n"


def _small_key(path) -> str:
    subprocess.run(["openssl", "genrsa", "-out", str(path), "512"], check=True, capture_output=True)
    return str(path)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: str(p / "nope.pem"), "does not exist (make it with the three DKIM settings"),
        (lambda p: str(p), "is not a file"),
        (lambda p: _write(p / "k.pem", b"not a key\n"), "is not a PEM RSA private key"),
        (lambda p: _write(p / "k.pem", DAMAGED), "is not a PEM RSA private key"),
        (lambda p: _write(p / "big.pem", b"A" * 100_000), "is not a PEM RSA private key"),
        (lambda p: _small_key(p / "small.pem"), "holds a 512-bit key; DKIM needs at least 1024"),
    ],
    ids=["missing", "a directory", "text", "damaged", "huge", "512 bits"],
)
def test_a_dkim_key_that_cannot_sign_stops_the_app(tmp_path, make, expected):
    key_file = make(tmp_path)
    _check_refused(tmp_path, key_file, expected)


def test_a_truncated_dkim_key_stops_the_app(tmp_path, dkim_key):
    lines = Path(dkim_key).read_bytes().splitlines(keepends=True)
    key_file = _write(tmp_path / "cut.pem", b"".join(lines[:10] + lines[-1:]))
    _check_refused(tmp_path, key_file, "is not a PEM RSA private key")


def test_a_dkim_key_whose_parts_do_not_fit_stops_the_app(tmp_path, dkim_key):
    """It parses, but would sign every mail with a signature that never
    verifies: the last byte (of the CRT coefficient) changed."""
    lines = Path(dkim_key).read_bytes().splitlines()
    der = bytearray(base64.b64decode(b"".join(lines[1:-1])))
    der[-1] ^= 0x01
    pem = b"\n".join([lines[0], base64.encodebytes(bytes(der)).strip(), lines[-1]]) + b"\n"
    key_file = _write(tmp_path / "damaged.pem", pem)
    _check_refused(tmp_path, key_file, "holds an RSA key whose parts do not fit together")


def _check_refused(tmp_path, key_file: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, **dkim_env(key_file))
    assert str(caught.value).startswith(f'DKIM_PRIVATE_KEY_FILE: "{key_file}" {expected}')
    assert "\n" not in str(caught.value)


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_the_public_key_is_not_taken_for_the_private_one(tmp_path, dkim_key):
    public = tmp_path / "public.pem"
    subprocess.run(
        ["openssl", "rsa", "-in", dkim_key, "-pubout", "-out", str(public)],
        check=True,
        capture_output=True,
    )
    with pytest.raises(ConfigError, match="is not a PEM RSA private key"):
        settings(tmp_path, **dkim_env(str(public)))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_dkim_key_is_named(tmp_path, dkim_key):
    key = tmp_path / "k.pem"
    key.write_bytes(Path(dkim_key).read_bytes())
    key.chmod(0)
    with pytest.raises(ConfigError, match=r"cannot be read \(Permission denied\)"):
        settings(tmp_path, **dkim_env(str(key)))


def test_a_bad_dkim_key_given_to_create_app_stops_it(tmp_path):
    with pytest.raises(ConfigError, match="DKIM_PRIVATE_KEY_FILE"):
        create_app(
            {
                "TESTING": True,
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.db",
                **dkim_env(str(tmp_path / "nope.pem")),
            }
        )


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"MAIL_BOUNCE_ADDRESS": "bounces@bounce.example.com"}, "bounces@bounce.example.com"),
        # A trailing + marks where the tag goes; MTAs may lower-case it all.
        ({"MAIL_BOUNCE_ADDRESS": " Bounces+@Bounce.Example.COM "}, "bounces@bounce.example.com"),
        ({"BOUNCE_LOCAL": "bounce.s_1", "BOUNCE_DOMAIN": "localhost"}, "bounce.s_1@localhost"),
        ({"MAIL_BOUNCE_ADDRESS": "", "BOUNCE_LOCAL": " ", "BOUNCE_DOMAIN": ""}, None),
    ],
)
def test_the_bounce_address_is_read_from_either_setting(tmp_path, environ, expected):
    assert settings(tmp_path, **environ)["MAIL_BOUNCE_ADDRESS"] == expected


LOCAL_RULE = "up to 32 letters, digits, dots, hyphens or underscores"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"MAIL_BOUNCE_ADDRESS": "bounces"},
            'MAIL_BOUNCE_ADDRESS: "bounces" is not an address such as '
            f"bounces@bounce.example.com (a mailbox name of {LOCAL_RULE})",
        ),
        (
            {"MAIL_BOUNCE_ADDRESS": "a+b@example.com"},
            'MAIL_BOUNCE_ADDRESS: "a+b@example.com" is not an address such as '
            f"bounces@bounce.example.com (a mailbox name of {LOCAL_RULE})",
        ),
        (
            # The tag must fit in RFC 5321's 64-character local part.
            {"BOUNCE_LOCAL": "b" * 33, "BOUNCE_DOMAIN": "example.com"},
            f'BOUNCE_LOCAL: "{"b" * 33}" is not a mailbox name such as bounces ({LOCAL_RULE})',
        ),
        (
            {"BOUNCE_LOCAL": "bounces", "BOUNCE_DOMAIN": "exa mple.com"},
            'BOUNCE_DOMAIN: "exa mple.com" is not a domain such as bounce.example.com',
        ),
        ({"BOUNCE_LOCAL": "bounces"}, "BOUNCE_LOCAL and BOUNCE_DOMAIN go together: set both"),
        (
            {"MAIL_BOUNCE_ADDRESS": "b@example.com", "BOUNCE_DOMAIN": "example.com"},
            "MAIL_BOUNCE_ADDRESS and BOUNCE_LOCAL/BOUNCE_DOMAIN are both set: set one or the other",
        ),
    ],
)
def test_a_bad_bounce_address_is_named(tmp_path, environ, message):
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, **environ)
    assert str(caught.value) == message


def test_webhook_secrets_are_off_by_default_and_read_when_set(tmp_path):
    off = settings(tmp_path)
    assert off["MAILGUN_WEBHOOK_SIGNING_KEY"] is None
    assert (off["POSTMARK_WEBHOOK_USER"], off["POSTMARK_WEBHOOK_PASSWORD"]) == (None, None)
    on = settings(
        tmp_path,
        MAILGUN_WEBHOOK_SIGNING_KEY=" key-0123456789abcdef ",
        POSTMARK_WEBHOOK_USER="hook",
        POSTMARK_WEBHOOK_PASSWORD="p" * 16,
    )
    assert on["MAILGUN_WEBHOOK_SIGNING_KEY"] == "key-0123456789abcdef"
    assert (on["POSTMARK_WEBHOOK_USER"], on["POSTMARK_WEBHOOK_PASSWORD"]) == ("hook", "p" * 16)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MAILGUN_WEBHOOK_SIGNING_KEY": "short"}, "MAILGUN_WEBHOOK_SIGNING_KEY: too short"),
        ({"POSTMARK_WEBHOOK_USER": "hook"}, "POSTMARK_WEBHOOK_USER and POSTMARK_WEBHOOK_PASSWORD"),
        ({"POSTMARK_WEBHOOK_PASSWORD": "p" * 16}, "go together"),
        (
            {"POSTMARK_WEBHOOK_USER": "a:b", "POSTMARK_WEBHOOK_PASSWORD": "p" * 16},
            "has no colon",
        ),
        (
            {"POSTMARK_WEBHOOK_USER": "hook", "POSTMARK_WEBHOOK_PASSWORD": "short"},
            "16 characters or more",
        ),
        ({"WEBHOOK_RATE_LIMIT": "lots"}, 'WEBHOOK_RATE_LIMIT: "lots" is not a rate limit'),
    ],
)
def test_a_bad_webhook_setting_is_named(tmp_path, environ, message):
    with pytest.raises(ConfigError, match=message):
        settings(tmp_path, **environ)


def test_ses_topics_are_read_and_checked(tmp_path):
    arn = "arn:aws:sns:eu-west-1:123456789012:ses-bounces"
    assert settings(tmp_path)["SES_SNS_TOPIC_ARNS"] == []
    assert settings(tmp_path, SES_SNS_TOPIC_ARNS=f" {arn} ,")["SES_SNS_TOPIC_ARNS"] == [arn]
    with pytest.raises(ConfigError, match='SES_SNS_TOPIC_ARNS: "ses-bounces" is not a topic ARN'):
        settings(tmp_path, SES_SNS_TOPIC_ARNS="ses-bounces")


def test_outgoing_webhook_settings_default_and_read(tmp_path):
    defaults = settings(tmp_path)
    assert defaults["WEBHOOK_ALLOW_PRIVATE_TARGETS"] is False
    assert defaults["WEBHOOK_DISABLE_AFTER_DAYS"] == 5
    assert defaults["WEBHOOK_TIMEOUT"] == 10.0
    given = settings(
        tmp_path,
        WEBHOOK_ALLOW_PRIVATE_TARGETS="yes",
        WEBHOOK_DISABLE_AFTER_DAYS="2",
        WEBHOOK_TIMEOUT="2.5",
    )
    assert given["WEBHOOK_ALLOW_PRIVATE_TARGETS"] is True
    assert given["WEBHOOK_DISABLE_AFTER_DAYS"] == 2
    assert given["WEBHOOK_TIMEOUT"] == 2.5


def test_a_lease_shorter_than_one_webhook_post_stops_the_worker(tmp_path):
    from services.delivery.worker import Worker

    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.db",
            "WORKER_LEASE_SECONDS": 30,
            "MAIL_TIMEOUT": 5,
            "WEBHOOK_TIMEOUT": 20,
        }
    )
    with pytest.raises(ConfigError, match=r"2 × WEBHOOK_TIMEOUT \+ 1 = 41 s"):
        Worker(app)


def test_staff_account_settings_default_and_parse(tmp_path):
    cfg = settings(tmp_path)
    assert cfg["STAFF_REQUIRE_2FA"] == "none"
    assert cfg["STAFF_INVITATION_HOURS"] == 72
    assert cfg["PASSWORD_RESET_RATE_LIMIT"] == "5 per hour"
    cfg = settings(
        tmp_path,
        STAFF_REQUIRE_2FA=" Admin ",
        STAFF_INVITATION_HOURS="24",
        PASSWORD_RESET_RATE_LIMIT="3 per hour",
    )
    assert cfg["STAFF_REQUIRE_2FA"] == "admin"
    assert cfg["STAFF_INVITATION_HOURS"] == 24
    assert cfg["PASSWORD_RESET_RATE_LIMIT"] == "3 per hour"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("STAFF_REQUIRE_2FA", "admins", "one of none, admin, all"),
        ("STAFF_INVITATION_HOURS", "0", "a whole number from 1 to 720"),
        ("STAFF_INVITATION_HOURS", "3d", "a whole number from 1 to 720"),
        ("PASSWORD_RESET_RATE_LIMIT", "often", "a rate limit such as 5 per hour"),
    ],
)
def test_a_bad_staff_account_setting_is_named(tmp_path, name, value, expected):
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, **{name: value})
    assert str(caught.value) == f'{name}: "{value}" is not {expected}'


def test_the_api_rate_limit_is_read_and_checked(tmp_path):
    assert settings(tmp_path)["API_RATE_LIMIT"] == "120 per minute"
    assert settings(tmp_path, API_RATE_LIMIT="30/minute")["API_RATE_LIMIT"] == "30/minute"
    with pytest.raises(ConfigError, match='API_RATE_LIMIT: "fast" is not a rate limit'):
        settings(tmp_path, API_RATE_LIMIT="fast")


def test_metrics_are_for_loopback_by_default_and_a_token_is_optional(tmp_path):
    import ipaddress

    off = settings(tmp_path)
    assert off["METRICS_ALLOWED_IPS"] == [
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    ]
    assert off["METRICS_TOKEN"] is None
    on = settings(
        tmp_path, METRICS_ALLOWED_IPS=" 10.0.0.0/8, 192.0.2.7 ,fd00::/8", METRICS_TOKEN="t" * 16
    )
    assert [str(n) for n in on["METRICS_ALLOWED_IPS"]] == ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]
    assert on["METRICS_TOKEN"] == "t" * 16


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"METRICS_ALLOWED_IPS": "10.0.0.0/8, intranet"},
            'METRICS_ALLOWED_IPS: "intranet" is not an address or CIDR range such as 10.0.0.0/8',
        ),
        # Host bits set: a typo for 10.0.0.0/8, or for 10.1.2.3 alone.
        (
            {"METRICS_ALLOWED_IPS": "10.1.2.3/8"},
            'METRICS_ALLOWED_IPS: "10.1.2.3/8" is not an address or CIDR range',
        ),
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN is too short: use at least 16 characters"),
    ],
)
def test_a_bad_metrics_setting_is_named(tmp_path, environ, message):
    with pytest.raises(ConfigError, match=message) as caught:
        settings(tmp_path, **environ)
    assert 'short"' not in str(caught.value)  # a token is never echoed
