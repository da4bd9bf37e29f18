"""staff accounts: per-sign-in sessions, emailed links, 2FA, staff mail kinds

A sign-in is a staff_session row (the cookie names it by a key stored
hashed) instead of one session_token per user; staff_token holds
invitations and password resets (their hashes only); staff_recovery_code
the 2FA recovery codes; user_account the encrypted TOTP secret. The outbox
takes three kinds of mail to staff addresses and the link row they carry.

Revision ID: f4a14a2d50e4
Revises: 62ce9400ba6e
Create Date: 2026-11-29 20:32:37.808510

"""
from alembic import op
import sqlalchemy as sa

import models.base


# revision identifiers, used by Alembic.
revision = 'f4a14a2d50e4'
down_revision = '62ce9400ba6e'
branch_labels = None
depends_on = None

KIND_CHECK = 'ck_outbox_message_mail_kind'
KINDS_BEFORE = (
    'confirmation', 'confirm_reminder', 'already_subscribed', 'welcome',
    'classes_followup', 'class_reminder', 'announcement', 'staff_notice',
)
KINDS_AFTER = (*KINDS_BEFORE, 'staff_invitation', 'password_reset')


def _kind_in(values):
    return 'kind IN (' + ', '.join(f"'{v}'" for v in values) + ')'


def upgrade():
    op.create_table('staff_recovery_code',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('used_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_staff_recovery_code_user_id_user_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_recovery_code'))
    )
    with op.batch_alter_table('staff_recovery_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_recovery_code_user_id'), ['user_id'], unique=False)

    op.create_table('staff_session',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('user_agent', sa.String(length=300), nullable=True),
    sa.Column('ended_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_staff_session_user_id_user_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_session')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_staff_session_key_hash'))
    )
    with op.batch_alter_table('staff_session', schema=None) as batch_op:
        batch_op.create_index('ix_staff_session_user_ended', ['user_id', 'ended_at'], unique=False)

    op.create_table('staff_token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.Enum('invitation', 'password_reset', name='token_purpose', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('nonce', sa.String(length=43), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('role', sa.Enum('marketer', 'admin', name='user_role', native_enum=False, create_constraint=True, length=20), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['user_account.id'], name=op.f('fk_staff_token_created_by_id_user_account'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_staff_token_user_id_user_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_token')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_staff_token_token_hash'))
    )
    with op.batch_alter_table('staff_token', schema=None) as batch_op:
        batch_op.create_index('ix_staff_token_purpose_email', ['purpose', 'email'], unique=False)

    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('staff_token_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_outbox_message_staff_token_id_staff_token'), 'staff_token', ['staff_token_id'], ['id'], ondelete='CASCADE')
        batch_op.drop_constraint(op.f(KIND_CHECK), type_='check')
        batch_op.create_check_constraint(op.f(KIND_CHECK), _kind_in(KINDS_AFTER))

    # Every session cookie named the dropped token: everyone signs in again.
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('totp_secret', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('totp_enabled_at', models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('totp_last_step', sa.Integer(), nullable=True))
        batch_op.drop_column('session_token')


def downgrade():
    # A token nobody holds: every session cookie stops working, as it should.
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_token', sa.VARCHAR(length=32), nullable=False, server_default='downgraded'))
        batch_op.drop_column('totp_last_step')
        batch_op.drop_column('totp_enabled_at')
        batch_op.drop_column('totp_secret')

    op.execute("DELETE FROM outbox_message WHERE kind IN ('staff_invitation', 'password_reset')")
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_constraint(op.f(KIND_CHECK), type_='check')
        batch_op.create_check_constraint(op.f(KIND_CHECK), _kind_in(KINDS_BEFORE))
        batch_op.drop_constraint(batch_op.f('fk_outbox_message_staff_token_id_staff_token'), type_='foreignkey')
        batch_op.drop_column('staff_token_id')

    with op.batch_alter_table('staff_token', schema=None) as batch_op:
        batch_op.drop_index('ix_staff_token_purpose_email')

    op.drop_table('staff_token')
    with op.batch_alter_table('staff_session', schema=None) as batch_op:
        batch_op.drop_index('ix_staff_session_user_ended')

    op.drop_table('staff_session')
    with op.batch_alter_table('staff_recovery_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_recovery_code_user_id'))

    op.drop_table('staff_recovery_code')
