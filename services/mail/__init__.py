"""Mail as bytes: an outbox row composed into headers and parts, announcement
Markdown rendered in a sandbox, absolute links, and the transports (file,
smtp, console) that hand a mail on.
"""
