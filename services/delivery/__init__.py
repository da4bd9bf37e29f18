"""The outbox and its worker: writing rows in the caller's transaction,
claiming them with a lease, the send-time rules, sending and recording, and
what operators ask of the queue.
"""
