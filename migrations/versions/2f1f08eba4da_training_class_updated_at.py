"""training_class.updated_at: when a class last changed (the training page's lastmod in the sitemap)

Revision ID: 2f1f08eba4da
Revises: c3a9e5d1f7b2
Create Date: 2026-11-29 20:32:36.715182

"""
from alembic import op
import sqlalchemy as sa

import models.base


# revision identifiers, used by Alembic.
revision = '2f1f08eba4da'
down_revision = 'c3a9e5d1f7b2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('training_class', schema=None) as batch_op:
        batch_op.add_column(sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=True))
    # Rows saved before: their last known change is their creation.
    op.execute("UPDATE training_class SET updated_at = created_at WHERE updated_at IS NULL")


def downgrade():
    with op.batch_alter_table('training_class', schema=None) as batch_op:
        batch_op.drop_column('updated_at')
