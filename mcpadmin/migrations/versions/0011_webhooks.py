"""webhooks: the endpoints Needs attention events are sent to, and each event's delivery

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-14
"""

import sqlalchemy as sa
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

LOG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    op.create_table('webhook_endpoint',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('url_enc', sa.Text(), nullable=False),
    sa.Column('label', sa.String(length=300), nullable=False),
    sa.Column('format', sa.String(length=20), nullable=False),
    sa.Column('secret_enc', sa.Text(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoint'))
    )
    op.create_table('webhook_delivery',
    sa.Column('id', LOG_ID, nullable=False),
    sa.Column('endpoint_id', sa.Integer(), nullable=False),
    sa.Column('event_key', sa.String(length=200), nullable=False),
    sa.Column('open_key', sa.String(length=200), nullable=True),
    sa.Column('event', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(length=300), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoint.id'],
                            name=op.f('fk_webhook_delivery_endpoint_id_webhook_endpoint'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_delivery')),
    sa.UniqueConstraint('endpoint_id', 'open_key', name=op.f('uq_webhook_delivery_endpoint_id'))
    )
    op.create_index(op.f('ix_webhook_delivery_endpoint_id'), 'webhook_delivery', ['endpoint_id'])
    op.create_index(op.f('ix_webhook_delivery_created_at'), 'webhook_delivery', ['created_at'])
    op.create_index('ix_webhook_delivery_status_next_attempt_at', 'webhook_delivery',
                    ['status', 'next_attempt_at'])


def downgrade():
    op.drop_index('ix_webhook_delivery_status_next_attempt_at', table_name='webhook_delivery')
    op.drop_index(op.f('ix_webhook_delivery_created_at'), table_name='webhook_delivery')
    op.drop_index(op.f('ix_webhook_delivery_endpoint_id'), table_name='webhook_delivery')
    op.drop_table('webhook_delivery')
    op.drop_table('webhook_endpoint')
