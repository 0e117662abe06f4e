"""admin_session: one row per signed-in browser, so signing out ends the session server-side

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    # Cookies issued before this revision carry no session token: their holders sign in again.
    op.create_table('admin_session',
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('admin_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['admin_id'], ['admin_user.id'],
                            name=op.f('fk_admin_session_admin_id_admin_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_sha256', name=op.f('pk_admin_session'))
    )
    op.create_index(op.f('ix_admin_session_admin_id'), 'admin_session', ['admin_id'])
    op.create_index(op.f('ix_admin_session_created_at'), 'admin_session', ['created_at'])


def downgrade():
    op.drop_index(op.f('ix_admin_session_created_at'), table_name='admin_session')
    op.drop_index(op.f('ix_admin_session_admin_id'), table_name='admin_session')
    op.drop_table('admin_session')
