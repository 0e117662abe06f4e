"""resources, resource templates and prompts beside tools; per-agent choices of them; the kind
of each call log row; server requests relayed to agents; resource subscriptions

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

import mcpadmin.models


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'catalog_item',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('connector_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('key', sa.String(length=1024), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=True),
        sa.Column('title', sa.String(length=1000), nullable=True),
        sa.Column('description', sa.Text(), nullable=True),
        sa.Column('mime_type', sa.String(length=255), nullable=True),
        sa.Column('definition', sa.JSON(), nullable=False),
        sa.Column('definition_hash', sa.String(length=64), nullable=True),
        sa.Column('updated_at', mcpadmin.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['connector_id'], ['connector.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('connector_id', 'kind', 'key'),
    )
    op.create_table(
        'pending_ask',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('session_sha256', sa.String(length=64), nullable=True),
        sa.Column('agent_id', sa.Integer(), nullable=False),
        sa.Column('method', sa.String(length=100), nullable=False),
        sa.Column('answer', sa.JSON(), nullable=True),
        sa.Column('created_at', mcpadmin.models.UTCDateTime(), nullable=False),
        sa.Column('answered_at', mcpadmin.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['agent_id'], ['agent.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('pending_ask') as batch:
        batch.create_index('ix_pending_ask_session_sha256', ['session_sha256'])
        batch.create_index('ix_pending_ask_agent_id', ['agent_id'])
        batch.create_index('ix_pending_ask_created_at', ['created_at'])
    op.create_table(
        'resource_subscription',
        sa.Column('session_sha256', sa.String(length=64), nullable=False),
        sa.Column('connector_id', sa.Integer(), nullable=False),
        sa.Column('uri', sa.String(length=1024), nullable=False),
        sa.Column('created_at', mcpadmin.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['connector_id'], ['connector.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('session_sha256', 'connector_id', 'uri'),
    )
    # Not in batch mode: on SQLite that recreates the table, and dropping the old one (with
    # foreign keys on) would delete every tool, item and connection of every connector.
    op.add_column('connector', sa.Column('server_capabilities', sa.JSON(), nullable=True))
    with op.batch_alter_table('agent_connection') as batch:
        batch.add_column(sa.Column('enabled_prompts', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('enabled_resources', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('changed_prompts', sa.JSON(), nullable=True))
    op.execute("UPDATE agent_connection SET enabled_prompts = '[]', enabled_resources = '[]'")
    with op.batch_alter_table('agent_connection') as batch:
        batch.alter_column('enabled_prompts', existing_type=sa.JSON(), nullable=False)
        batch.alter_column('enabled_resources', existing_type=sa.JSON(), nullable=False)
    with op.batch_alter_table('gateway_session') as batch:
        batch.add_column(sa.Column('client_capabilities', sa.JSON(), nullable=True))
    with op.batch_alter_table('call_log') as batch:
        batch.add_column(sa.Column('kind', sa.String(length=20), nullable=False,
                                   server_default='tool'))
        batch.create_index('ix_call_log_kind_id', ['kind', 'id'])


def downgrade():
    with op.batch_alter_table('call_log') as batch:
        batch.drop_index('ix_call_log_kind_id')
        batch.drop_column('kind')
    with op.batch_alter_table('gateway_session') as batch:
        batch.drop_column('client_capabilities')
    with op.batch_alter_table('agent_connection') as batch:
        batch.drop_column('changed_prompts')
        batch.drop_column('enabled_resources')
        batch.drop_column('enabled_prompts')
    op.drop_column('connector', 'server_capabilities')  # not in batch mode: see upgrade
    op.drop_table('resource_subscription')
    op.drop_table('pending_ask')
    op.drop_table('catalog_item')
