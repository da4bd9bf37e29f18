"""What marketing mail is about and when it goes: CSPO classes, announcements
and their fan-out, reminders timed to class dates, and the follow-up sequence.
"""
