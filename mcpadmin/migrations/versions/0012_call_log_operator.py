"""call log: the admin who made a call as the agent from the console

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('call_log') as batch:
        batch.add_column(sa.Column('operator_name', sa.String(length=80), nullable=True))


def downgrade():
    with op.batch_alter_table('call_log') as batch:
        batch.drop_column('operator_name')
