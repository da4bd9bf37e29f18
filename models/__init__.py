"""SQLAlchemy models, one module per aggregate."""

from models.analytics import PageViewDaily, SignupStatsDaily
from models.announcement import Announcement, AnnouncementStatus, ClassClick
from models.audit import AuditEvent
from models.base import Base, UTCDateTime, utcnow
from models.inbound import InboundEvent, InboundKind, WebhookNonce
from models.lead import ConsentEvent, ConsentKind, ConsentText, Lead, LeadStatus, LeadTopic
from models.lead_import import ImportStatus, LeadImport, LeadImportChunk, LeadImportIssue
from models.outbox import MailKind, OutboxMessage, OutboxStatus
from models.suppression import Suppression, email_hash
from models.training import ClassReminderRun, ClassStatus, TrainingClass
from models.user import Role, User

__all__ = [
    "Announcement",
    "AnnouncementStatus",
    "AuditEvent",
    "Base",
    "ClassClick",
    "ClassReminderRun",
    "ClassStatus",
    "ConsentEvent",
    "ConsentKind",
    "ConsentText",
    "ImportStatus",
    "InboundEvent",
    "InboundKind",
    "Lead",
    "LeadImport",
    "LeadImportChunk",
    "LeadImportIssue",
    "LeadStatus",
    "LeadTopic",
    "MailKind",
    "OutboxMessage",
    "OutboxStatus",
    "PageViewDaily",
    "Role",
    "SignupStatsDaily",
    "Suppression",
    "TrainingClass",
    "UTCDateTime",
    "User",
    "WebhookNonce",
    "email_hash",
    "utcnow",
]
