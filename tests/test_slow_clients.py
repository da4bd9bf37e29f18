"""Slow clients (slowloris) do not take the site offline.

An attacker opens many connections and sends each request's header a line
at a time, one line every few seconds, so the request never ends. gunicorn
reads a header in one of its threads until it is complete: every such
connection holds a thread. Two answers, both tested here:

- `flask serve` (what `make run` runs) has threads enough for the sockets
  one attacker's script opens by default (slowloris: 150), with room to
  spare: SLOW_SOCKETS trickling connections, and /healthz still answers.
- In production nginx sits in front (deploy/nginx/): it reads every request
  whole before gunicorn sees it, so even one sync worker behind it answers
  while as many slow clients hold connections to nginx; the same clients
  sent straight at that worker stop it (the attack is real).

Attackers connect from 127.0.0.2, the probes from 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import getpass
import http.client
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import procs
from tests.helpers import require_service

pytestmark = pytest.mark.slow

# More than slowloris's default of 150 sockets, and five times the 50 that
# stopped gunicorn's sync workers in the attack run (issue 14).
SLOW_SOCKETS = 250
LINE_EVERY = 2.5  # seconds between two header lines of each slow client
PROBES = 10
PROBE_TIMEOUT = 2.0  # seconds: a /healthz slower than this counts as down
ATTACKER = "127.0.0.2"
DEPLOY = procs.ROOT / "deploy" / "nginx"
UPSTREAM = "proxy_pass http://127.0.0.1:8000;"


@contextlib.contextmanager
def slow_clients(port: int, count: int = SLOW_SOCKETS) -> Iterator[list[socket.socket]]:
    """`count` connections to 127.0.0.1:port, each sending a request's
    header one line every LINE_EVERY seconds, never its end."""
    socks: list[socket.socket] = []
    stop = threading.Event()

    def trickle() -> None:
        line = 0
        while not stop.wait(LINE_EVERY):
            line += 1
            for s in socks:
                with contextlib.suppress(OSError):
                    s.sendall(b"X-Slow-%d: a\r\n" % line)

    try:
        for _ in range(count):
            s = socket.create_connection(
                ("127.0.0.1", port), timeout=5, source_address=(ATTACKER, 0)
            )
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            socks.append(s)
        feeder = threading.Thread(target=trickle, daemon=True)
        feeder.start()
        time.sleep(1.0)  # every connection accepted, its first line read
        yield socks
    finally:
        stop.set()
        for s in socks:
            s.close()


def health_answers(port: int, probes: int = PROBES) -> int:
    """How many of `probes` GET /healthz, each on a new connection, got a 200
    within PROBE_TIMEOUT."""
    ok = 0
    for _ in range(probes):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT)
        try:
            conn.request("GET", "/healthz")
            ok += conn.getresponse().status == 200
        except OSError:
            pass
        finally:
            conn.close()
    return ok


def _attacker_address_works() -> None:
    try:
        with socket.socket() as s:
            s.bind((ATTACKER, 0))
    except OSError as exc:
        pytest.skip(f"cannot bind {ATTACKER} on this machine: {exc}")


# --- flask serve, as make run starts it.


@pytest.fixture
def served(tmp_path) -> Iterator[procs.Server]:
    port = procs.free_port()
    env = procs.app_env(tmp_path, f"sqlite:///{tmp_path / 'leads.sqlite3'}", port=port)
    procs.flask_db_upgrade(env)
    argv = [procs.PYTHON, "-m", "flask", "--app", "app", "serve", "--port", str(port)]
    server = procs.Server(argv, env, tmp_path / "serve.log", port)
    try:
        server.start()
        server.wait_healthy()
        yield server
    finally:
        server.stop()


def test_flask_serve_answers_while_slow_clients_hold_connections(served):
    _attacker_address_works()
    with slow_clients(served.port):
        answered = health_answers(served.port)
    assert answered == PROBES, served.log()


# --- nginx in front, with the configuration in deploy/nginx/.


def _nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        require_service("nginx", "no nginx binary (apt-get install nginx)")
    return found


def _private_nginx_conf(tmp: Path, port: int, upstream_port: int, server_block: str) -> Path:
    """A whole nginx.conf for an instance of our own: its pid, logs and
    temporary files in tmp, listening on loopback only."""
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    snippet = (DEPLOY / "leads-proxy.conf").read_text()
    assert snippet.count(UPSTREAM) == 1, "deploy/nginx/leads-proxy.conf names its upstream once"
    (tmp / "leads-proxy.conf").write_text(
        snippet.replace(UPSTREAM, f"proxy_pass http://127.0.0.1:{upstream_port};")
    )
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""
# As root, nginx would run its workers as nobody, who cannot enter tmp.
user {getpass.getuser()};
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    {server_block.replace("@PORT@", str(port)).replace("@TMP@", str(tmp))}
}}
"""
    )
    return conf


@contextlib.contextmanager
def nginx(tmp: Path, upstream_port: int) -> Iterator[procs.Server]:
    binary = _nginx_binary()
    port = procs.free_port()
    server_block = "server { listen 127.0.0.1:@PORT@; include @TMP@/leads-proxy.conf; }"
    conf = _private_nginx_conf(tmp, port, upstream_port, server_block)
    argv = [binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)]
    server = procs.Server(argv, {}, tmp / "nginx.out", port)
    try:
        server.start()
        server.wait_healthy()
        yield server
    finally:
        server.stop()
        if server.log():
            print(server.log())
        print((tmp / "error.log").read_text(errors="replace")[-4000:])


@pytest.fixture
def behind_nginx(tmp_path) -> Iterator[tuple[procs.Server, procs.Server]]:
    """One sync gunicorn worker, the weakest there is, behind nginx."""
    gunicorn_port, nginx_port = procs.free_port(), procs.free_port()
    env = procs.app_env(
        tmp_path,
        f"sqlite:///{tmp_path / 'leads.sqlite3'}",
        port=nginx_port,
        TRUSTED_PROXY_COUNT=1,
        SIGNUP_RATE_LIMIT="3 per minute",
    )
    procs.flask_db_upgrade(env)
    with (
        procs.gunicorn(env, workers=1, port=gunicorn_port) as app_server,
        nginx(tmp_path / "nginx", gunicorn_port) as proxy,
    ):
        yield app_server, proxy


def test_nginx_holds_slow_clients_a_bare_worker_cannot(behind_nginx):
    _attacker_address_works()
    app_server, proxy = behind_nginx
    with slow_clients(proxy.port):
        assert health_answers(proxy.port) == PROBES
    with slow_clients(app_server.port, count=5):
        assert health_answers(app_server.port, probes=1) == 0, "the attack is real"


def _post(port: int, path: str, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body="email=a%40example.com", headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def test_nginx_sets_the_forwarded_headers_a_client_cannot_forge(behind_nginx):
    _app_server, proxy = behind_nginx
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    # A new X-Forwarded-For each time buys no new allowance: nginx replaces it.
    codes = [
        _post(proxy.port, "/subscribe", {**form, "X-Forwarded-For": f"198.51.100.{i}"})
        for i in range(5)
    ]
    assert 429 in codes and codes.index(429) == 3, codes
    # Nor does X-Forwarded-Host reach a redirect.
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        conn.request("GET", "/marketing", headers={"X-Forwarded-Host": "evil.example"})
        location = conn.getresponse().getheader("Location") or ""
    finally:
        conn.close()
    assert location and "evil.example" not in location


def test_metrics_are_not_served_through_nginx(behind_nginx):
    """Scraped on gunicorn's own address: through the proxy, every client
    would come from loopback, which METRICS_ALLOWED_IPS allows."""
    app_server, proxy = behind_nginx
    statuses = {}
    for name, port in (("nginx", proxy.port), ("gunicorn", app_server.port)):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            statuses[name] = conn.getresponse().status
        finally:
            conn.close()
    assert statuses == {"nginx": 404, "gunicorn": 200}


def test_the_shipped_site_file_passes_nginx_t(tmp_path):
    """deploy/nginx/leads-site.conf, with a throwaway certificate: nginx -t."""
    binary = _nginx_binary()
    if not shutil.which("openssl"):
        require_service("openssl", "no openssl binary to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subject = ["-subj", "/CN=leads.example.com", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *subject],
        check=True,
        capture_output=True,
    )
    site = (DEPLOY / "leads-site.conf").read_text()
    for shipped, ours in {
        "/etc/nginx/snippets/leads-proxy.conf": str(DEPLOY / "leads-proxy.conf"),
        "/etc/letsencrypt/live/leads.example.com/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/leads.example.com/privkey.pem": str(key),
    }.items():
        assert shipped in site, shipped
        site = site.replace(shipped, ours)
    # nginx -t binds the ports: loopback ones of our own, IPv4 only.
    site = re.sub(r"\n\s*listen \[::\]:.*", "", site)
    for public in (80, 443):
        site = re.sub(rf"listen {public}\b", f"listen 127.0.0.1:{procs.free_port()}", site)
    (tmp_path / "site.conf").write_text(site)
    conf = _private_nginx_conf(tmp_path, 0, 8000, f"include {tmp_path / 'site.conf'};")
    result = subprocess.run(
        [binary, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
