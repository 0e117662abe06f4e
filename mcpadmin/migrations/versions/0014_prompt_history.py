"""prompt definition history: each definition a prompt has had, and which one each agent
accepted (the tools' ``tool_definition`` / ``tool_review`` for catalog items)

Every stored prompt gets its current definition as its first version, first seen when its
row was last updated. New tables only: nothing existing is altered (on SQLite a batch alter
of ``catalog_item`` would recreate it and cascade-delete its children).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

import mcpadmin.models


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'catalog_item_definition',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('item_id', sa.Integer(), nullable=False),
        sa.Column('connector_id', sa.Integer(), nullable=False),
        sa.Column('definition_hash', sa.String(length=64), nullable=False),
        sa.Column('title', sa.String(length=1000), nullable=True),
        sa.Column('description', sa.Text(), nullable=True),
        sa.Column('definition', sa.JSON(), nullable=False),
        sa.Column('first_seen_at', mcpadmin.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['connector_id'], ['connector.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['item_id'], ['catalog_item.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_catalog_item_definition_connector_id', 'catalog_item_definition',
                    ['connector_id'])
    op.create_index('ix_catalog_item_definition_item_id_id', 'catalog_item_definition',
                    ['item_id', 'id'])
    op.create_table(
        'catalog_item_review',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('item_id', sa.Integer(), nullable=False),
        sa.Column('agent_id', sa.Integer(), nullable=True),
        sa.Column('agent_name', sa.String(length=100), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('admin_name', sa.String(length=80), nullable=True),
        sa.Column('definition_hash', sa.String(length=64), nullable=True),
        sa.Column('at', mcpadmin.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['agent_id'], ['agent.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['item_id'], ['catalog_item.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_catalog_item_review_agent_id', 'catalog_item_review', ['agent_id'])
    op.create_index('ix_catalog_item_review_item_id_id', 'catalog_item_review',
                    ['item_id', 'id'])

    # A prompt without a hash gets its first version from the next sync, which sees it change.
    op.execute(
        "INSERT INTO catalog_item_definition (item_id, connector_id, definition_hash, title, "
        "description, definition, first_seen_at) SELECT id, connector_id, definition_hash, "
        "title, description, definition, updated_at FROM catalog_item "
        "WHERE kind = 'prompt' AND definition_hash IS NOT NULL"
    )


def downgrade():
    op.drop_table('catalog_item_review')
    op.drop_table('catalog_item_definition')
