"""SQLAlchemy models, one module per aggregate."""

from models.base import Base, UTCDateTime, utcnow
from models.lead import ConsentEvent, ConsentKind, ConsentText, Lead, LeadStatus, LeadTopic
from models.outbox import MailKind, OutboxMessage, OutboxStatus
from models.suppression import Suppression, email_hash
from models.training import ClassStatus, TrainingClass

__all__ = [
    "Base",
    "ClassStatus",
    "ConsentEvent",
    "ConsentKind",
    "ConsentText",
    "Lead",
    "LeadStatus",
    "LeadTopic",
    "MailKind",
    "OutboxMessage",
    "OutboxStatus",
    "Suppression",
    "TrainingClass",
    "UTCDateTime",
    "email_hash",
    "utcnow",
]
