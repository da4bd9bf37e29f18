"""Leads: signup and double opt-in, preferences and unsubscribe, consent
wording, topics, address syntax, the signed tokens in their links, the guards
on the public form, the suppression list and personal-data requests.
"""
