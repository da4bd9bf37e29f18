"""outgoing webhooks and the staff_notice mail kind

Endpoints admins register (webhook_endpoint), the events each receives
(webhook_subscription), one delivery row per event and endpoint
(webhook_delivery: the queue and the delivery log), and the outbox's kind
CHECK widened for staff_notice (a mail to a staff member, no lead).

Revision ID: 62ce9400ba6e
Revises: 2f1f08eba4da
Create Date: 2026-11-29 20:34:47.342037

"""
from alembic import op
import sqlalchemy as sa

import models.base


# revision identifiers, used by Alembic.
revision = '62ce9400ba6e'
down_revision = '2f1f08eba4da'
branch_labels = None
depends_on = None

KIND_CHECK = 'ck_outbox_message_mail_kind'
KINDS_BEFORE = (
    'confirmation', 'confirm_reminder', 'already_subscribed', 'welcome',
    'classes_followup', 'class_reminder', 'announcement',
)
KINDS_AFTER = (*KINDS_BEFORE, 'staff_notice')


def _kind_in(values):
    return 'kind IN (' + ', '.join(f"'{v}'" for v in values) + ')'


def upgrade():
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_constraint(op.f(KIND_CHECK), type_='check')
        batch_op.create_check_constraint(op.f(KIND_CHECK), _kind_in(KINDS_AFTER))

    op.create_table('webhook_endpoint',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=24), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('description', sa.String(length=200), nullable=False),
    sa.Column('secret_encrypted', sa.Text(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('disabled_reason', sa.String(length=300), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('failing_since', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['user_account.id'], name=op.f('fk_webhook_endpoint_created_by_id_user_account'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoint')),
    sa.UniqueConstraint('public_id', name=op.f('uq_webhook_endpoint_public_id'))
    )
    op.create_table('webhook_delivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('endpoint_id', sa.Integer(), nullable=False),
    sa.Column('event_type', sa.String(length=40), nullable=False),
    sa.Column('message_id', sa.String(length=40), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('lead_public_id', sa.String(length=24), nullable=True),
    sa.Column('status', sa.Enum('queued', 'sending', 'delivered', 'failed', 'skipped', name='webhook_delivery_status', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('send_after', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('lease_until', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(length=100), nullable=True),
    sa.Column('attempted_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('response_status', sa.Integer(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoint.id'], name=op.f('fk_webhook_delivery_endpoint_id_webhook_endpoint'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_delivery'))
    )
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_delivery_endpoint_id', ['endpoint_id', 'id'], unique=False)
        batch_op.create_index('ix_webhook_delivery_lead_public_id', ['lead_public_id'], unique=False)
        batch_op.create_index('ix_webhook_delivery_status_send_after', ['status', 'send_after'], unique=False)
        batch_op.create_index('uq_webhook_delivery_endpoint_message', ['endpoint_id', 'message_id'], unique=True)

    op.create_table('webhook_subscription',
    sa.Column('endpoint_id', sa.Integer(), nullable=False),
    sa.Column('event_type', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoint.id'], name=op.f('fk_webhook_subscription_endpoint_id_webhook_endpoint'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('endpoint_id', 'event_type', name=op.f('pk_webhook_subscription'))
    )
    with op.batch_alter_table('webhook_subscription', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_subscription_event_type', ['event_type'], unique=False)


def downgrade():
    with op.batch_alter_table('webhook_subscription', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_subscription_event_type')

    op.drop_table('webhook_subscription')
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.drop_index('uq_webhook_delivery_endpoint_message')
        batch_op.drop_index('ix_webhook_delivery_status_send_after')
        batch_op.drop_index('ix_webhook_delivery_lead_public_id')
        batch_op.drop_index('ix_webhook_delivery_endpoint_id')

    op.drop_table('webhook_delivery')
    op.drop_table('webhook_endpoint')

    op.execute("DELETE FROM outbox_message WHERE kind = 'staff_notice'")
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_constraint(op.f(KIND_CHECK), type_='check')
        batch_op.create_check_constraint(op.f(KIND_CHECK), _kind_in(KINDS_BEFORE))
