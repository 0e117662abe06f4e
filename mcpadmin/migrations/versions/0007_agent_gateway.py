"""agent gateway: connector slugs, output schemas, agent keys, legacy sessions, cancellations,
each connection's last call, and the per-agent tool-naming choice

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from mcpadmin.models import slug_base


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('connector') as batch:
        batch.add_column(sa.Column('slug', sa.String(length=28), nullable=True))
    connection = op.get_bind()
    taken = set()
    rows = connection.execute(sa.text('SELECT id, name FROM connector ORDER BY id')).all()
    for row_id, name in rows:
        base = slug = slug_base(name or '')
        number = 1
        while slug in taken:
            number += 1
            slug = f'{base}_{number}'
        taken.add(slug)
        connection.execute(sa.text('UPDATE connector SET slug = :slug WHERE id = :id'),
                           {'slug': slug, 'id': row_id})
    with op.batch_alter_table('connector') as batch:
        batch.alter_column('slug', existing_type=sa.String(length=28), nullable=False)
        batch.create_unique_constraint(batch.f('uq_connector_slug'), ['slug'])

    with op.batch_alter_table('tool') as batch:
        batch.add_column(sa.Column('output_schema', sa.JSON(), nullable=True))
    with op.batch_alter_table('agent') as batch:
        batch.add_column(sa.Column('keep_tool_names', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table('agent_connection') as batch:
        batch.add_column(sa.Column('last_called_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('last_call_error', sa.Text(), nullable=True))

    op.create_table('agent_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('lookup', sa.String(length=32), nullable=False),
    sa.Column('key_hmac', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['agent_id'], ['agent.id'],
                            name=op.f('fk_agent_key_agent_id_agent'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agent_key')),
    sa.UniqueConstraint('lookup', name=op.f('uq_agent_key_lookup'))
    )
    op.create_index(op.f('ix_agent_key_agent_id'), 'agent_key', ['agent_id'])
    op.create_table('gateway_session',
    sa.Column('id_sha256', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=False),
    sa.Column('protocol_version', sa.String(length=20), nullable=False),
    sa.Column('client_info', sa.JSON(), nullable=True),
    sa.Column('log_level', sa.String(length=20), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['agent_key.id'],
                            name=op.f('fk_gateway_session_key_id_agent_key'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id_sha256', name=op.f('pk_gateway_session'))
    )
    op.create_index(op.f('ix_gateway_session_key_id'), 'gateway_session', ['key_id'])
    op.create_index(op.f('ix_gateway_session_last_seen_at'), 'gateway_session', ['last_seen_at'])
    op.create_table('gateway_cancellation',
    sa.Column('session_sha256', sa.String(length=64), nullable=False),
    sa.Column('request_id', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('session_sha256', 'request_id', name=op.f('pk_gateway_cancellation'))
    )
    op.create_index(op.f('ix_gateway_cancellation_created_at'), 'gateway_cancellation',
                    ['created_at'])


def downgrade():
    op.drop_index(op.f('ix_gateway_cancellation_created_at'), table_name='gateway_cancellation')
    op.drop_table('gateway_cancellation')
    op.drop_index(op.f('ix_gateway_session_last_seen_at'), table_name='gateway_session')
    op.drop_index(op.f('ix_gateway_session_key_id'), table_name='gateway_session')
    op.drop_table('gateway_session')
    op.drop_index(op.f('ix_agent_key_agent_id'), table_name='agent_key')
    op.drop_table('agent_key')
    with op.batch_alter_table('agent_connection') as batch:
        batch.drop_column('last_call_error')
        batch.drop_column('last_called_at')
    with op.batch_alter_table('agent') as batch:
        batch.drop_column('keep_tool_names')
    with op.batch_alter_table('tool') as batch:
        batch.drop_column('output_schema')
    with op.batch_alter_table('connector') as batch:
        batch.drop_constraint(batch.f('uq_connector_slug'), type_='unique')
        batch.drop_column('slug')
