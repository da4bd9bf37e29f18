"""Leads: signup and double opt-in, preferences and unsubscribe, consent
wording, topics, address syntax, the guards on the public form, the
suppression list and personal-data requests.
"""
