"""tool sync state: per-agent listing, changed-definition flags, freshness

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('connector') as batch:
        batch.add_column(sa.Column('tools_fresh_until', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('agent_connection') as batch:
        batch.add_column(sa.Column('last_synced_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('tools_fresh_until', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('offered_tools', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('changed_tools', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('agent_connection') as batch:
        batch.drop_column('changed_tools')
        batch.drop_column('offered_tools')
        batch.drop_column('tools_fresh_until')
        batch.drop_column('last_synced_at')
    with op.batch_alter_table('connector') as batch:
        batch.drop_column('tools_fresh_until')
