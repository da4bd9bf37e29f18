"""outbox: indexes for deliverability rates

Mails sent in a period (sent_at, status) and per announcement
(announcement_id, status), counted from the index alone on the
deliverability page and for the admin pages' complaint warning.

Revision ID: b7d1e2f3a4c5
Revises: 6d9424773637
Create Date: 2026-11-29 19:20:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'b7d1e2f3a4c5'
down_revision = '6d9424773637'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_message_sent_at_status', ['sent_at', 'status'], unique=False)
        batch_op.create_index('ix_outbox_message_announcement_status', ['announcement_id', 'status'], unique=False)


def downgrade():
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_message_announcement_status')
        batch_op.drop_index('ix_outbox_message_sent_at_status')
