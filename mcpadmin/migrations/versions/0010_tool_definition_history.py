"""tool definition history: each definition a tool has had, and which one each agent accepted

Every stored tool gets its current definition as its first version, first seen when the
tool row was last updated.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-14
"""

import sqlalchemy as sa
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('tool_definition',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tool_id', sa.Integer(), nullable=False),
    sa.Column('connector_id', sa.Integer(), nullable=False),
    sa.Column('definition_hash', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=1000), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('input_schema', sa.JSON(), nullable=True),
    sa.Column('output_schema', sa.JSON(), nullable=True),
    sa.Column('annotations', sa.JSON(), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['connector_id'], ['connector.id'], name=op.f('fk_tool_definition_connector_id_connector'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tool_id'], ['tool.id'], name=op.f('fk_tool_definition_tool_id_tool'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tool_definition'))
    )
    op.create_index(op.f('ix_tool_definition_connector_id'), 'tool_definition', ['connector_id'])
    op.create_index('ix_tool_definition_tool_id_id', 'tool_definition', ['tool_id', 'id'])

    op.create_table('tool_review',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tool_id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=True),
    sa.Column('agent_name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('admin_name', sa.String(length=80), nullable=True),
    sa.Column('definition_hash', sa.String(length=64), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agent.id'], name=op.f('fk_tool_review_agent_id_agent'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tool_id'], ['tool.id'], name=op.f('fk_tool_review_tool_id_tool'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tool_review'))
    )
    op.create_index(op.f('ix_tool_review_agent_id'), 'tool_review', ['agent_id'])
    op.create_index('ix_tool_review_tool_id_id', 'tool_review', ['tool_id', 'id'])

    # A tool without a hash gets its first version from the next sync, which sees it change.
    op.execute(
        "INSERT INTO tool_definition (tool_id, connector_id, definition_hash, title, "
        "description, input_schema, output_schema, annotations, first_seen_at) "
        "SELECT id, connector_id, definition_hash, title, description, input_schema, "
        "output_schema, annotations, updated_at FROM tool WHERE definition_hash IS NOT NULL"
    )


def downgrade():
    op.drop_table('tool_review')
    op.drop_table('tool_definition')
