"""lead_import: CSV imports of leads, their file chunks and issues

Revision ID: e33e744f0ff1
Revises: bfc028b0f1d5
Create Date: 2026-11-29 20:32:22.007009

"""
from alembic import op
import sqlalchemy as sa

import models.base


# revision identifiers, used by Alembic.
revision = 'e33e744f0ff1'
down_revision = 'bfc028b0f1d5'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('lead_import',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=24), nullable=False),
    sa.Column('status', sa.Enum('uploaded', 'checking', 'checked', 'queued', 'running', 'done', 'failed', 'cancelled', name='import_status', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('consent_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=320), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('topics', sa.String(length=200), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=True),
    sa.Column('confirm_by_mail', sa.Boolean(), nullable=False),
    sa.Column('encoding', sa.String(length=20), nullable=False),
    sa.Column('mapping', sa.JSON(), nullable=False),
    sa.Column('stored', sa.Boolean(), nullable=False),
    sa.Column('rows_done', sa.Integer(), nullable=False),
    sa.Column('new', sa.Integer(), nullable=False),
    sa.Column('updated', sa.Integer(), nullable=False),
    sa.Column('unchanged', sa.Integer(), nullable=False),
    sa.Column('refused', sa.Integer(), nullable=False),
    sa.Column('warnings', sa.Integer(), nullable=False),
    sa.Column('dry_run', sa.JSON(), nullable=True),
    sa.Column('owner', sa.String(length=120), nullable=True),
    sa.Column('lease_until', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('started_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['consent_hash'], ['consent_text.hash'], name=op.f('fk_lead_import_consent_hash_consent_text')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_lead_import_user_id_user_account'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lead_import')),
    sa.UniqueConstraint('public_id', name=op.f('uq_lead_import_public_id'))
    )
    with op.batch_alter_table('lead_import', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lead_import_sha256'), ['sha256'], unique=False)
        batch_op.create_index('ix_lead_import_status_lease', ['status', 'lease_until'], unique=False)

    op.create_table('lead_import_chunk',
    sa.Column('import_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['lead_import.id'], name=op.f('fk_lead_import_chunk_import_id_lead_import'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('import_id', 'seq', name=op.f('pk_lead_import_chunk'))
    )
    op.create_table('lead_import_issue',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('import_id', sa.Integer(), nullable=False),
    sa.Column('line', sa.Integer(), nullable=False),
    sa.Column('refused', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.String(length=300), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['lead_import.id'], name=op.f('fk_lead_import_issue_import_id_lead_import'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lead_import_issue'))
    )
    with op.batch_alter_table('lead_import_issue', schema=None) as batch_op:
        batch_op.create_index('ix_lead_import_issue_import_id_line', ['import_id', 'line'], unique=False)

    with op.batch_alter_table('consent_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('import_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_consent_event_import_id_lead_import'), 'lead_import', ['import_id'], ['id'], ondelete='SET NULL')



def downgrade():
    with op.batch_alter_table('consent_event', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_consent_event_import_id_lead_import'), type_='foreignkey')
        batch_op.drop_column('import_id')

    with op.batch_alter_table('lead_import_issue', schema=None) as batch_op:
        batch_op.drop_index('ix_lead_import_issue_import_id_line')

    op.drop_table('lead_import_issue')
    op.drop_table('lead_import_chunk')
    with op.batch_alter_table('lead_import', schema=None) as batch_op:
        batch_op.drop_index('ix_lead_import_status_lease')
        batch_op.drop_index(batch_op.f('ix_lead_import_sha256'))

    op.drop_table('lead_import')
