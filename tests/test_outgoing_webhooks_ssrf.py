"""Where outgoing webhooks may not go (SSRF): private, loopback, link-local,
multicast, reserved and unspecified addresses, IPv4 and IPv6 and IPv4 inside
IPv6, refused when an admin registers them and again when the worker is
about to connect (the address connected to is the one checked)."""

from __future__ import annotations

import ipaddress

import pytest
from sqlalchemy import select, update

from extensions import db
from models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from services.outgoing_webhooks import events as outgoing
from services.outgoing_webhooks import targets
from tests.helpers import count, csrf_token, drain, page_text, sign_in_admin
from tests.imap_server import make_ca_and_certificate
from tests.webhook_receiver import webhook_receiver

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",  # noqa: S104 (an address to refuse, not one to bind)
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:8.8.8.8",  # mapped, even to a public address: connect to 8.8.8.8 instead
    "2002:7f00:1::1",  # 6to4 around 127.0.0.1
    "64:ff9b::808:808",  # NAT64 (in ::/8, reserved), even of a public address
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"]


def url_for_ip(ip: str) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"https://{host}/hook"


@pytest.mark.parametrize("ip", REFUSED)
def test_a_private_or_special_address_is_not_public(ip):
    assert not targets.is_public(ipaddress.ip_address(ip))
    with pytest.raises(targets.TargetError, match="refused"):
        targets.check(url_for_ip(ip), allow_private=False)


@pytest.mark.parametrize("ip", PUBLIC)
def test_a_public_address_is(ip):
    assert targets.is_public(ipaddress.ip_address(ip))
    assert targets.check(url_for_ip(ip), allow_private=False).host == ip


def test_a_name_that_resolves_to_loopback_is_refused():
    with pytest.raises(targets.TargetError, match=r"localhost resolves to .* refused"):
        targets.check("http://localhost:8080/hook", allow_private=False)


def test_the_host_header_and_tls_name_are_the_urls():
    target = targets.parse("https://Hooks.Example.com:8443/in?a=1#frag")
    assert (target.host, target.port, target.path) == ("hooks.example.com", 8443, "/in?a=1")
    assert target.host_header == "hooks.example.com:8443"
    assert targets.parse("https://[2606:4700::1]/").host_header == "[2606:4700::1]"


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1/x", "https://[::ffff:127.0.0.1]/x", "http://169.254.169.254/"]
)
def test_the_admin_form_refuses_private_targets(app, client, url):
    sign_in_admin(app, client)
    token = csrf_token(client, "/admin/webhooks")
    r = client.post(
        "/admin/webhooks", data={"csrf_token": token, "url": url, "events": ["lead.created"]}
    )
    assert r.status_code == 400
    assert "refused" in page_text(r)
    assert count(app, WebhookEndpoint) == 0


def test_delivery_checks_the_address_again(app, client):
    """Registered while private targets were allowed (or while the name
    pointed elsewhere): the worker refuses to connect, and the receiver
    hears nothing."""
    app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"] = True
    with webhook_receiver() as receiver:
        sign_in_admin(app, client)
        token = csrf_token(client, "/admin/webhooks")
        r = client.post(
            "/admin/webhooks",
            data={
                "csrf_token": token,
                "url": receiver.url(host="localhost"),
                "events": ["lead.erased"],
            },
        )
        assert r.status_code == 200
        app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"] = False
        with app.app_context():
            outgoing.emit("lead.erased", {"lead": "abc"})
            db.session.commit()
        drain(app)
        assert receiver.requests == []
        with app.app_context():
            row = db.session.execute(select(WebhookDelivery)).scalar_one()
            assert row.status == DeliveryStatus.QUEUED  # retried, in case it was a DNS blip
            assert row.last_error.startswith("refused: localhost resolves to")
            assert row.response_status is None

        # Allowed again (a test set-up, a trusted network): it goes, by name.
        app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"] = True
        with app.app_context():
            outgoing.emit("lead.erased", {"lead": "def"})
            db.session.commit()
        drain(app)
        (request,) = receiver.requests
        assert request.headers["host"] == f"localhost:{receiver.port}"
        assert request.payload["data"] == {"lead": "def"}


def test_tls_goes_to_the_checked_address_with_the_urls_name(app, client, tmp_path, monkeypatch):
    """https://localhost:port/ connected to the address checked, with SNI
    and the certificate check on the URL's name: a certificate from an
    unknown CA is refused; trusted (OpenSSL's SSL_CERT_FILE), it goes."""
    ca, cert, key = make_ca_and_certificate(tmp_path)
    app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"] = True
    with webhook_receiver((str(cert), str(key))) as receiver:
        sign_in_admin(app, client)
        token = csrf_token(client, "/admin/webhooks")
        data = {
            "csrf_token": token,
            "url": receiver.url(host="localhost"),
            "events": ["lead.erased"],
        }
        assert client.post("/admin/webhooks", data=data).status_code == 200
        with app.app_context():
            outgoing.emit("lead.erased", {"lead": "abc"})
            db.session.commit()
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-ca.pem"))
        drain(app)
        assert receiver.requests == []
        assert receiver.server_names == ["localhost"]
        with app.app_context():
            row = db.session.execute(select(WebhookDelivery)).scalar_one()
            assert "CERTIFICATE_VERIFY_FAILED" in row.last_error
            db.session.execute(update(WebhookDelivery).values(send_after=row.created_at))
            db.session.commit()

        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        drain(app)
        (request,) = receiver.requests
        assert receiver.server_names == ["localhost", "localhost"]
        assert request.headers["host"] == f"localhost:{receiver.port}"
        with app.app_context():
            assert db.session.execute(select(WebhookDelivery.status)).scalar_one() == (
                DeliveryStatus.DELIVERED
            )
