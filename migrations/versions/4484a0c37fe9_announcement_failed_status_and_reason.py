"""announcement: a failed status and the reason it failed

An announcement that cannot be sent (a stored date out of range, a text past
the render bounds) is marked failed with its reason instead of stopping the
worker's planning or being retried for ever.

Revision ID: 4484a0c37fe9
Revises: f4538e6eb80d
Create Date: 2026-11-29 18:09:10.128296

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '4484a0c37fe9'
down_revision = 'f4538e6eb80d'
branch_labels = None
depends_on = None

CHECK = 'ck_announcement_announcement_status'
BEFORE = ('draft', 'scheduled', 'sending', 'paused', 'sent', 'cancelled')
AFTER = (*BEFORE, 'failed')


def _status_in(values):
    return 'status IN (' + ', '.join(f"'{v}'" for v in values) + ')'


def upgrade():
    with op.batch_alter_table('announcement', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failure', sa.Text(), nullable=True))
        batch_op.drop_constraint(op.f(CHECK), type_='check')
        batch_op.create_check_constraint(op.f(CHECK), _status_in(AFTER))


def downgrade():
    op.execute("UPDATE announcement SET status = 'cancelled' WHERE status = 'failed'")
    with op.batch_alter_table('announcement', schema=None) as batch_op:
        batch_op.drop_constraint(op.f(CHECK), type_='check')
        batch_op.create_check_constraint(op.f(CHECK), _status_in(BEFORE))
        batch_op.drop_column('failure')
