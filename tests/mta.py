"""Debian's Postfix as a private instance on loopback, for tests that need a
real MTA in the loop (tests/test_postfix.py).

Everything of the instance is in a directory of its own: main.cf and
master.cf, the queue, the data directory, its log and the mailboxes. Nothing
in /etc/postfix is changed (only the package's postfix-files list is read),
and no system Postfix is started or stopped: master and `postfix check` get
`-c DIR`. Its master runs in the foreground
(`master -d`) as a procs.Proc, so stopping it stops every Postfix process.

    with postfix(mailboxes=["box"], relay_domains={"bounce.example.com": 2525}) as mta:
        smtplib.SMTP("127.0.0.1", mta.port).sendmail(...)
        mta.mailbox("box")  # the messages delivered to box@DOMAIN

Postfix runs as root only (it drops to the `postfix` user itself).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import smtplib
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from tests import procs

# The instance's own domain, where its mailboxes are (not .test: the app's
# address validation refuses that special-use name).
DOMAIN = "postfix.example"
POSTFIX = "/usr/sbin/postfix"
DAEMON_DIR = Path("/usr/lib/postfix/sbin")

# Only the services a relay with virtual mailboxes needs; chroot off (the
# fifth column), so nothing has to be copied into the queue directory.
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60  1 pickup
cleanup   unix  n - n -   0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -   - trivial-rewrite
bounce    unix  - - n -   0 bounce
defer     unix  - - n -   0 bounce
trace     unix  - - n -   0 bounce
verify    unix  - - n -   1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -   - proxymap
smtp      unix  - - n -   - smtp
error     unix  - - n -   - error
retry     unix  - - n -   - error
discard   unix  - - n -   - discard
virtual   unix  - n n -   - virtual
anvil     unix  - - n -   1 anvil
scache    unix  - - n -   1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def _inline(table: Mapping[str, str]) -> str:
    return "inline:{ " + ", ".join(f"{k}={v}" for k, v in table.items()) + " }"


def main_cf(base: Path, *, mailboxes: Sequence[str], relay_domains: Mapping[str, int]) -> str:
    """main.cf of the instance in base: a relay for 127.0.0.1 that delivers
    to `mailboxes` at DOMAIN and hands mail for each relay domain to the
    SMTP server on 127.0.0.1:port; any other domain is refused."""
    owner = pwd.getpwnam("nobody")  # virtual(8) never delivers as root
    boxes = {f"{box}@{DOMAIN}": f"{box}/" for box in mailboxes}  # trailing /: Maildir
    transports = {domain: f"smtp:[127.0.0.1]:{port}" for domain, port in relay_domains.items()}
    return f"""\
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.{DOMAIN}
mydomain = {DOMAIN}
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
biff = no
# No DNS at all: every next hop is an address in transport_maps.
smtp_dns_support_level = disabled
smtp_host_lookup = native
default_transport = error:5.7.1 this test instance sends no mail out
transport_maps = {_inline(transports)}
relay_domains = {" ".join(relay_domains)}
# Mailboxes that exist; any other address at the domain is accepted by smtpd
# and then bounced by virtual(8) as unknown, so Postfix writes the DSN itself.
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {base}/mail
virtual_mailbox_maps = {_inline(boxes)}
virtual_uid_maps = static:{owner.pw_uid}
virtual_gid_maps = static:{owner.pw_gid}
smtpd_reject_unlisted_recipient = no
# A bounce that cannot be handed on at once is tried again within seconds,
# not minutes.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
# Postfix's SMTP client turns an 8bit body into quoted-printable for a next
# hop that does not offer 8BITMIME: that changes the signed body and breaks
# DKIM, so a relay of signed mail must not convert. Delivery to a Maildir
# never converts: the test passes without this; it is here as a relay's
# configuration should be.
disable_mime_output_conversion = yes
"""


class Postfix(procs.Proc):
    """A running instance: its SMTP port, its directory, its log."""

    def __init__(self, base: Path, port: int):
        super().__init__(
            [str(DAEMON_DIR / "master"), "-c", str(base / "conf"), "-d"],
            {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            base / "master.out",
        )
        self.base, self.port = base, port

    def maillog(self, tail: int = 6000) -> str:
        try:
            return (self.base / "maillog").read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    def mailbox(self, box: str) -> list[bytes]:
        """What was delivered to box@DOMAIN (its Maildir), oldest first."""
        new = self.base / "mail" / box / "new"
        if not new.is_dir():
            return []
        files = sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        return [f.read_bytes() for f in files]

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until smtpd greets (master has bound the port and forks smtpd on a connection)."""

        def greets() -> bool:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as client:
                client.noop()
            return True

        self.wait_until(greets, "postfix smtpd", timeout, self.maillog)


def missing_reason() -> str | None:
    """Why Postfix cannot run here, or None."""
    if not (Path(POSTFIX).is_file() and (DAEMON_DIR / "master").is_file()):
        return (
            "no Postfix (DEBIAN_FRONTEND=noninteractive apt-get install postfix, "
            "main_mailer_type 'No configuration')"
        )
    if os.geteuid() != 0:
        return "Postfix's master must be started as root"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "no `postfix` user (the Debian package makes it)"
    return None


@contextlib.contextmanager
def postfix(
    *, mailboxes: Sequence[str] = ("box",), relay_domains: Mapping[str, int] | None = None
) -> Iterator[Postfix]:
    """A private Postfix on a free port of 127.0.0.1, ready on entry, stopped
    and removed on exit. Its directory is made outside pytest's tmp_path,
    which only root may enter: Postfix's daemons run as `postfix` and deliver
    as `nobody`. Its log is printed on the way out (pytest shows it on failure)."""
    base = Path(tempfile.mkdtemp(prefix="postfix-test-"))
    base.chmod(0o755)
    port = procs.free_port()
    conf = base / "conf"
    conf.mkdir()
    (conf / "main.cf").write_text(
        main_cf(base, mailboxes=mailboxes, relay_domains=relay_domains or {})
    )
    (conf / "master.cf").write_text(MASTER_CF.format(port=port))
    (base / "queue").mkdir()  # root's; `postfix check` fills it
    (base / "data").mkdir()
    shutil.chown(base / "data", "postfix")
    nobody = pwd.getpwnam("nobody")
    (base / "mail").mkdir()
    os.chown(base / "mail", nobody.pw_uid, nobody.pw_gid)
    mta = Postfix(base, port)
    try:
        # `postfix check` makes the queue's directories with their owners
        # and modes (post-install create-missing), as `postfix start` would.
        checked = subprocess.run(
            [POSTFIX, "-c", str(conf), "check"], capture_output=True, text=True, timeout=60
        )
        if checked.returncode != 0:
            raise procs.ProcessFailed(
                f"postfix check:\n{checked.stdout}{checked.stderr}{mta.maillog()}"
            )
        mta.start()
        mta.wait_ready()
        yield mta
    finally:
        mta.stop()
        print(f"--- postfix maillog ({base})\n{mta.maillog()}")
        shutil.rmtree(base, ignore_errors=True)
