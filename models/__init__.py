"""SQLAlchemy models, one module per aggregate."""

from models.analytics import PageViewDaily, SignupStatsDaily
from models.announcement import Announcement, AnnouncementStatus, ClassClick
from models.api_token import ApiToken, TokenScope
from models.audit import AuditEvent
from models.base import Base, UTCDateTime, utcnow
from models.inbound import InboundEvent, InboundKind, WebhookNonce
from models.lead import ConsentEvent, ConsentKind, ConsentText, Lead, LeadStatus, LeadTopic
from models.lead_import import ImportStatus, LeadImport, LeadImportChunk, LeadImportIssue
from models.outbox import MailKind, OutboxMessage, OutboxStatus
from models.outgoing_webhook import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSubscription,
)
from models.staff import RecoveryCode, StaffSession, StaffToken, TokenPurpose
from models.suppression import Suppression, email_hash
from models.training import ClassReminderRun, ClassStatus, TrainingClass
from models.user import Role, User

__all__ = [
    "Announcement",
    "AnnouncementStatus",
    "ApiToken",
    "AuditEvent",
    "Base",
    "ClassClick",
    "ClassReminderRun",
    "ClassStatus",
    "ConsentEvent",
    "ConsentKind",
    "ConsentText",
    "DeliveryStatus",
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
    "RecoveryCode",
    "Role",
    "SignupStatsDaily",
    "StaffSession",
    "StaffToken",
    "Suppression",
    "TokenPurpose",
    "TokenScope",
    "TrainingClass",
    "UTCDateTime",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookNonce",
    "WebhookSubscription",
    "email_hash",
    "utcnow",
]
