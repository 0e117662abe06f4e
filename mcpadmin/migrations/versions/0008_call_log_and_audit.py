"""call log, admin audit trail, and the per-connector choice to log call arguments

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

LOG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    with op.batch_alter_table('connector') as batch:
        batch.add_column(sa.Column('log_arguments', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))

    op.create_table('call_log',
    sa.Column('id', LOG_ID, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('request_id', sa.String(length=32), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=True),
    sa.Column('agent_name', sa.String(length=100), nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=True),
    sa.Column('key_label', sa.String(length=100), nullable=True),
    sa.Column('connector_id', sa.Integer(), nullable=True),
    sa.Column('connector_name', sa.String(length=100), nullable=True),
    sa.Column('tool', sa.String(length=200), nullable=False),
    sa.Column('upstream_tool', sa.String(length=200), nullable=True),
    sa.Column('era', sa.String(length=20), nullable=True),
    sa.Column('outcome', sa.String(length=40), nullable=False),
    sa.Column('total_ms', sa.Float(), nullable=False),
    sa.Column('upstream_ms', sa.Float(), nullable=True),
    sa.Column('error', sa.String(length=300), nullable=True),
    sa.Column('request_bytes', sa.Integer(), nullable=False),
    sa.Column('response_bytes', sa.Integer(), nullable=False),
    sa.Column('arguments', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_log'))
    )
    op.create_index(op.f('ix_call_log_at'), 'call_log', ['at'])
    op.create_index(op.f('ix_call_log_request_id'), 'call_log', ['request_id'])
    op.create_index('ix_call_log_agent_id_id', 'call_log', ['agent_id', 'id'])
    op.create_index('ix_call_log_connector_id_id', 'call_log', ['connector_id', 'id'])
    op.create_index('ix_call_log_outcome_id', 'call_log', ['outcome', 'id'])
    op.create_index('ix_call_log_tool_id', 'call_log', ['tool', 'id'])

    op.create_table('audit_event',
    sa.Column('id', LOG_ID, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('admin_name', sa.String(length=80), nullable=True),
    sa.Column('address', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('target_type', sa.String(length=20), nullable=True),
    sa.Column('target_id', sa.Integer(), nullable=True),
    sa.Column('target_name', sa.String(length=200), nullable=True),
    sa.Column('details', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_event'))
    )
    op.create_index(op.f('ix_audit_event_at'), 'audit_event', ['at'])
    op.create_index('ix_audit_event_action_id', 'audit_event', ['action', 'id'])
    op.create_index('ix_audit_event_admin_name_id', 'audit_event', ['admin_name', 'id'])


def downgrade():
    op.drop_index('ix_audit_event_admin_name_id', table_name='audit_event')
    op.drop_index('ix_audit_event_action_id', table_name='audit_event')
    op.drop_index(op.f('ix_audit_event_at'), table_name='audit_event')
    op.drop_table('audit_event')
    op.drop_index('ix_call_log_tool_id', table_name='call_log')
    op.drop_index('ix_call_log_outcome_id', table_name='call_log')
    op.drop_index('ix_call_log_connector_id_id', table_name='call_log')
    op.drop_index('ix_call_log_agent_id_id', table_name='call_log')
    op.drop_index(op.f('ix_call_log_request_id'), table_name='call_log')
    op.drop_index(op.f('ix_call_log_at'), table_name='call_log')
    op.drop_table('call_log')
    with op.batch_alter_table('connector') as batch:
        batch.drop_column('log_arguments')
