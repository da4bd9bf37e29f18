"""Debian's Dovecot as a private IMAP server on loopback, for
tests/test_bounce_mailbox.py.

Everything of the instance is in a directory of its own: dovecot.conf (the
only configuration read: `dovecot -c FILE`, never /etc/dovecot), its
base_dir and state_dir, a passwd-file with one user, that user's Maildir, a
test CA and the server certificate it signed. It listens on 127.0.0.1 on a
free port with TLS from the first byte (imaps), and `ssl = required`.
The master runs in the foreground (`-F`) as a procs.Proc; stopping it stops
every Dovecot process. No system Dovecot is started or stopped.

    with dovecot() as imap:
        imap.deliver(raw)       # a file in the user's Maildir new/
        imap.messages()         # what is left in it, with its flags

Dovecot's master runs as root (it drops to `dovecot`/`dovenull` itself and
reads and writes the Maildir as `nobody`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests import procs

DOVECOT = "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "imap-test-password"

CONF = """\
protocols = imap
listen = 127.0.0.1
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
ssl = required
ssl_cert = <{base}/server.pem
ssl_key = <{base}/server.key
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={base}/home/%u
}}
mail_location = maildir:{base}/mail/%u
first_valid_uid = 1
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
"""


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca_and_certificate(where: Path) -> tuple[Path, Path, Path]:
    """A test CA (ca.pem) and a certificate it signed for 127.0.0.1 and
    localhost (server.pem, server.key), made with the openssl command."""
    ca_key, ca = where / "ca.key", where / "ca.pem"
    key, csr, cert = where / "server.key", where / "server.csr", where / "server.pem"
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=Leads test CA",
             "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    _openssl("req", *ec, "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr))
    ext = where / "server.ext"
    ext.write_text(
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n"
    )
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return ca, cert, key


class Dovecot(procs.Proc):
    """A running instance: its imaps port, its directory, its test CA."""

    def __init__(self, base: Path, port: int):
        super().__init__(
            [DOVECOT, "-F", "-c", str(base / "dovecot.conf")],
            {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            base / "master.out",
        )
        self.base, self.port = base, port
        self.ca_file = base / "ca.pem"
        self.maildir = base / "mail" / USER

    def dovecot_log(self, tail: int = 6000) -> str:
        try:
            return (self.base / "dovecot.log").read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    def deliver(self, raw: bytes) -> None:
        """One message into the Maildir's new/, as a delivery agent puts it."""
        nobody = pwd.getpwnam("nobody")
        name = f"{time.time_ns()}.{uuid.uuid4().hex}.test"
        tmp, new = self.maildir / "tmp" / name, self.maildir / "new" / name
        tmp.write_bytes(raw)
        os.chown(tmp, nobody.pw_uid, nobody.pw_gid)
        tmp.rename(new)

    def messages(self) -> list[tuple[bytes, str]]:
        """Each message left in the Maildir and its flags (the letters after
        ':2,'; `S` seen, `F` flagged, `T` deleted; keywords are letters a-z)."""
        out = []
        for sub in ("new", "cur"):
            for path in sorted((self.maildir / sub).iterdir()):
                out.append((path.read_bytes(), path.name.partition(":2,")[2]))
        return out

    def keywords(self) -> dict[str, str]:
        """The Maildir's keyword letters: {"a": "$BounceProcessed", ...}."""
        path = self.maildir / "dovecot-keywords"
        if not path.exists():
            return {}
        pairs = (line.split(" ", 1) for line in path.read_text().splitlines() if " " in line)
        return {chr(ord("a") + int(n)): word for n, word in pairs}

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until a TLS handshake with imap-login succeeds."""
        context = ssl.create_default_context(cafile=str(self.ca_file))

        def greets() -> bool:
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock,
                context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
            ):
                return tls.recv(100).startswith(b"* OK")

        self.wait_until(greets, "dovecot", timeout, self.dovecot_log)


def missing_reason() -> str | None:
    """Why Dovecot cannot run here, or None."""
    if not Path(DOVECOT).is_file():
        return "no Dovecot (DEBIAN_FRONTEND=noninteractive apt-get install dovecot-imapd)"
    if not shutil.which("openssl"):
        return "no openssl command to make the test certificate"
    if os.geteuid() != 0:
        return "Dovecot's master must be started as root"
    for user in ("dovecot", "dovenull", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"no `{user}` user (the Debian package makes it)"
    return None


@contextlib.contextmanager
def dovecot() -> Iterator[Dovecot]:
    """A private Dovecot on a free port of 127.0.0.1, ready on entry, stopped
    and removed on exit. Its directory is made outside pytest's tmp_path,
    which only root may enter: Dovecot's processes run as other users."""
    base = Path(tempfile.mkdtemp(prefix="dovecot-test-"))
    base.chmod(0o755)
    port = procs.free_port()
    nobody = pwd.getpwnam("nobody")
    make_ca_and_certificate(base)
    (base / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    conf = CONF.format(base=base, port=port, uid=nobody.pw_uid, gid=nobody.pw_gid)
    (base / "dovecot.conf").write_text(conf)
    for sub in ("mail", "home", f"mail/{USER}", f"home/{USER}"):
        (base / sub).mkdir()
        os.chown(base / sub, nobody.pw_uid, nobody.pw_gid)
    for sub in ("tmp", "new", "cur"):
        (base / "mail" / USER / sub).mkdir()
        os.chown(base / "mail" / USER / sub, nobody.pw_uid, nobody.pw_gid)
    server = Dovecot(base, port)
    try:
        server.start()
        server.wait_ready()
        yield server
    finally:
        server.stop()
        print(f"--- dovecot log ({base})\n{server.dovecot_log()}")
        shutil.rmtree(base, ignore_errors=True)
