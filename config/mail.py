"""The deliverability settings: DKIM, the bounce address (VERP), the bounce
mailbox (IMAP) and the ESP webhooks. Each group is read whole, because its
settings only make sense together."""

from __future__ import annotations

import re
from pathlib import Path

from config.environment import DOMAIN, HOST, ConfigError, Environment

# The VERP tag follows the bounce mailbox after this character; the tag is
# at most 31 characters (an outbox id and a 10-character signature), so the
# mailbox name is kept to 32 and the whole local part within RFC 5321's 64.
VERP_SEPARATOR = "+"
BOUNCE_LOCAL_MAX = 32
_ATOM = r"[A-Za-z0-9_-]+"
_SNS_TOPIC_ARN = re.compile(r"arn:aws(-cn|-us-gov)?:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}")
_BOUNCE_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")


def _is_bounce_local(local: str) -> bool:
    return len(local) <= BOUNCE_LOCAL_MAX and bool(_BOUNCE_LOCAL.fullmatch(local))


def webhooks(env: Environment) -> dict:
    """The ESP webhook secrets; Postmark's user and password go together."""
    key = env.value("MAILGUN_WEBHOOK_SIGNING_KEY")
    user, password = (
        env.value("POSTMARK_WEBHOOK_USER"),
        env.value("POSTMARK_WEBHOOK_PASSWORD"),
    )
    if key is not None and len(key) < 16:
        raise ConfigError(
            "MAILGUN_WEBHOOK_SIGNING_KEY: too short to be Mailgun's HTTP webhook "
            "signing key (copy it from Sending > Webhooks)"
        )
    if (user is None) != (password is None):
        raise ConfigError("POSTMARK_WEBHOOK_USER and POSTMARK_WEBHOOK_PASSWORD go together")
    if user is not None and ":" in user:
        raise ConfigError("POSTMARK_WEBHOOK_USER: a basic-auth user name has no colon")
    if password is not None and len(password) < 16:
        raise ConfigError(
            "POSTMARK_WEBHOOK_PASSWORD: use a random password of 16 characters or more"
        )
    arns = env.items("SES_SNS_TOPIC_ARNS")
    for arn in arns:
        if not _SNS_TOPIC_ARN.fullmatch(arn):
            raise ConfigError(
                f'SES_SNS_TOPIC_ARNS: "{arn}" is not a topic ARN such as '
                "arn:aws:sns:eu-west-1:123456789012:ses-bounces"
            )
    return {
        "SES_SNS_TOPIC_ARNS": arns,
        "MAILGUN_WEBHOOK_SIGNING_KEY": key,
        "POSTMARK_WEBHOOK_USER": user,
        "POSTMARK_WEBHOOK_PASSWORD": password,
    }


def bounce_address(env: Environment) -> str | None:
    """The VERP base address, local@domain in lower case (MTAs may lower
    a local part), from MAIL_BOUNCE_ADDRESS or BOUNCE_LOCAL plus
    BOUNCE_DOMAIN; None when neither is set."""
    full = env.value("MAIL_BOUNCE_ADDRESS")
    local, domain = env.value("BOUNCE_LOCAL"), env.value("BOUNCE_DOMAIN")
    if full and (local or domain):
        raise ConfigError(
            "MAIL_BOUNCE_ADDRESS and BOUNCE_LOCAL/BOUNCE_DOMAIN are both set: set one or the other"
        )
    if full:
        local, _, domain = full.rpartition("@")
        # "bounces+@example.com" marks where the tag goes: the same address.
        local = local.removesuffix(VERP_SEPARATOR)
        if not (_is_bounce_local(local) and HOST.fullmatch(domain)):
            raise ConfigError(
                f'MAIL_BOUNCE_ADDRESS: "{full}" is not an address such as '
                f"bounces@bounce.example.com (a mailbox name of up to {BOUNCE_LOCAL_MAX} "
                "letters, digits, dots, hyphens or underscores)"
            )
    elif local or domain:
        if not (local and domain):
            raise ConfigError("BOUNCE_LOCAL and BOUNCE_DOMAIN go together: set both")
        if not _is_bounce_local(local):
            raise ConfigError(
                f'BOUNCE_LOCAL: "{local}" is not a mailbox name such as bounces (up to '
                f"{BOUNCE_LOCAL_MAX} letters, digits, dots, hyphens or underscores)"
            )
        if not HOST.fullmatch(domain):
            raise ConfigError(
                f'BOUNCE_DOMAIN: "{domain}" is not a domain such as bounce.example.com'
            )
    else:
        return None
    return f"{local.lower()}@{domain.lower()}"


def bounce_imap(env: Environment) -> dict:
    """BOUNCE_IMAP_*: the mailbox `flask bounces fetch` reads (TLS always
    verified; BOUNCE_IMAP_CA_FILE adds a CA to trust). Host blank: none."""
    host, user = env.value("BOUNCE_IMAP_HOST"), env.value("BOUNCE_IMAP_USER")
    password, ca_file = env.text("BOUNCE_IMAP_PASSWORD"), env.value("BOUNCE_IMAP_CA_FILE")
    if host and not HOST.fullmatch(host):
        raise ConfigError(f'BOUNCE_IMAP_HOST: "{host}" is not a host such as imap.example.com')
    if host and not (user and password):
        raise ConfigError("BOUNCE_IMAP_HOST is set: set BOUNCE_IMAP_USER and _PASSWORD too")
    if ca_file and not Path(ca_file).is_file():
        raise ConfigError(f'BOUNCE_IMAP_CA_FILE: "{ca_file}" is not a file (PEM certificates)')
    return {
        "BOUNCE_IMAP_HOST": host,
        "BOUNCE_IMAP_PORT": env.integer("BOUNCE_IMAP_PORT", 993, minimum=1, maximum=65535),
        "BOUNCE_IMAP_USER": user,
        "BOUNCE_IMAP_PASSWORD": password,
        "BOUNCE_IMAP_FOLDER": env.value("BOUNCE_IMAP_FOLDER") or "INBOX",
        "BOUNCE_IMAP_CA_FILE": ca_file,
        "BOUNCE_IMAP_AFTER": env.choice("BOUNCE_IMAP_AFTER", "delete", ("delete", "flag")),
    }


def dkim(env: Environment) -> dict:
    """DKIM_DOMAIN, DKIM_SELECTOR, DKIM_PRIVATE_KEY_FILE: all three (mail is
    signed) or none. The key is read here once to check it; the app reads it
    again for signing (services.mail.dkim.init_app)."""
    names = ("DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_PRIVATE_KEY_FILE")
    values = {name: env.value(name) for name in names}
    missing = [name for name in names if values[name] is None]
    if len(missing) == len(names):
        return values
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} not set: DKIM_DOMAIN, DKIM_SELECTOR and "
            "DKIM_PRIVATE_KEY_FILE go together (all three to sign mail, or none)"
        )
    domain = values["DKIM_DOMAIN"].lower().rstrip(".")
    if not DOMAIN.fullmatch(domain):
        raise ConfigError(
            f'DKIM_DOMAIN: "{values["DKIM_DOMAIN"]}" is not a domain such as example.com'
        )
    selector = values["DKIM_SELECTOR"].lower()
    if not HOST.fullmatch(selector):
        raise ConfigError(
            f'DKIM_SELECTOR: "{values["DKIM_SELECTOR"]}" is not a selector such as s2026 '
            "(letters, digits and hyphens)"
        )
    from services.mail.dkim import DkimKeyError, read_private_key

    key_file = values["DKIM_PRIVATE_KEY_FILE"]
    try:
        read_private_key(key_file)
    except DkimKeyError as exc:
        hint = ""
        if not Path(key_file).exists():
            # The app (and so the flask CLI) does not start with the settings
            # pointing at a missing key: the key is made first.
            hint = (
                " (make it with the three DKIM settings blank: flask dkim keygen "
                f"--selector {selector} --domain {domain} --output {key_file})"
            )
        raise ConfigError(f'DKIM_PRIVATE_KEY_FILE: "{key_file}" {exc}{hint}') from None
    return {"DKIM_DOMAIN": domain, "DKIM_SELECTOR": selector, "DKIM_PRIVATE_KEY_FILE": key_file}
