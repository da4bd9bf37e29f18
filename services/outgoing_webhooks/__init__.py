"""Outgoing webhooks: endpoints admins register (endpoints.py), events the
services emit in their own transaction (events.py), signed delivery by the
worker (delivery.py), SSRF checks (targets.py), secrets at rest (secrets.py).
Not the inbound ESP webhooks of services.bounces.webhooks."""
