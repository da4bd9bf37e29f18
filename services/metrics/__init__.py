"""Prometheus metrics: what is counted (instruments), where the counts of
several gunicorn workers meet (multiproc), and the scrape (exposition)."""
