"""grant binding: where each OAuth grant was issued; the flow's metadata and connector snapshot

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

HOLDERS = ('connector', 'agent_connection')
ENDPOINTS = ('token_endpoint', 'revocation_endpoint')


def upgrade():
    for table in HOLDERS:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('token_obtained_at', sa.DateTime(timezone=True), nullable=True))
            batch.add_column(sa.Column('oauth_grant', sa.JSON(), nullable=True))
    with op.batch_alter_table('pending_authorization') as batch:
        batch.add_column(sa.Column('server_metadata', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('expected_connector', sa.JSON(), nullable=True))
    _bind_existing_grants()


def _bind_existing_grants():
    """Grants stored before this revision are bound to the authorization server the
    connector names now: the best knowledge there is, and never a later one."""
    bind = op.get_bind()
    meta = sa.MetaData()
    connector = sa.Table('connector', meta, autoload_with=bind)
    connection = sa.Table('agent_connection', meta, autoload_with=bind)
    rows = bind.execute(sa.select(connector).where(connector.c.auth_type == 'oauth')).mappings()
    for row in list(rows):
        metadata = dict(row['oauth_metadata'] or {})
        for name in ENDPOINTS:
            if row['oauth_' + name]:
                metadata[name] = row['oauth_' + name]
        if not metadata.get('token_endpoint'):
            continue
        grant = {
            'issuer': metadata.get('issuer') or metadata['token_endpoint'],
            'token_endpoint': metadata['token_endpoint'],
            'revocation_endpoint': metadata.get('revocation_endpoint'),
            'resource': None,
            'client_method': None,
            'client_id': None,
            'registration_id': None,
            'auth_methods': metadata.get('token_endpoint_auth_methods_supported') or [],
        }
        bind.execute(
            connector.update()
            .where(connector.c.id == row['id'], connector.c.access_token_enc.is_not(None))
            .values(oauth_grant=grant)
        )
        bind.execute(
            connection.update()
            .where(connection.c.connector_id == row['id'],
                   connection.c.access_token_enc.is_not(None))
            .values(oauth_grant=grant)
        )


def downgrade():
    with op.batch_alter_table('pending_authorization') as batch:
        batch.drop_column('expected_connector')
        batch.drop_column('server_metadata')
    for table in HOLDERS:
        with op.batch_alter_table(table) as batch:
            batch.drop_column('oauth_grant')
            batch.drop_column('token_obtained_at')
