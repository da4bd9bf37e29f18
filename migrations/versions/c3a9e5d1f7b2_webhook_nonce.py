"""webhook_nonce: signature tokens of ESP webhooks, to refuse a replay

Revision ID: c3a9e5d1f7b2
Revises: b7d1e2f3a4c5
Create Date: 2026-11-29 19:30:00.000000

"""
from alembic import op
import sqlalchemy as sa

import models


# revision identifiers, used by Alembic.
revision = 'c3a9e5d1f7b2'
down_revision = 'b7d1e2f3a4c5'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('webhook_nonce',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('seen_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_nonce')),
    sa.UniqueConstraint('provider', 'token_hash', name=op.f('uq_webhook_nonce_provider'))
    )
    with op.batch_alter_table('webhook_nonce', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_nonce_seen_at'), ['seen_at'], unique=False)


def downgrade():
    with op.batch_alter_table('webhook_nonce', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_nonce_seen_at'))

    op.drop_table('webhook_nonce')
