"""people and roles: each person's role, identity-provider binding and active flag; agents'
owners; connectors members may use; invites, SSO settings and pending OIDC sign-ins; the
actor's role in the audit trail

Everyone who could sign in before had every power, so existing people become owners; existing
agents have no owner (they are the operators'). Columns are added directly, never in batch
mode: on SQLite a batch alter recreates the table, and dropping the old ``agent`` or
``admin_user`` would cascade-delete its keys, connections and sessions.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

import mcpadmin.models


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('admin_user', sa.Column('role', sa.String(length=20), nullable=False,
                                          server_default='owner'))
    op.add_column('admin_user', sa.Column('email', sa.String(length=320), nullable=True))
    op.add_column('admin_user', sa.Column('display_name', sa.String(length=200), nullable=True))
    op.add_column('admin_user', sa.Column('oidc_issuer', sa.String(length=2048), nullable=True))
    op.add_column('admin_user', sa.Column('oidc_subject', sa.String(length=255), nullable=True))
    op.add_column('admin_user', sa.Column('active', sa.Boolean(), nullable=False,
                                          server_default='1'))
    op.add_column('admin_user', sa.Column('deactivated_at', mcpadmin.models.UTCDateTime(),
                                          nullable=True))
    op.add_column('admin_user', sa.Column('last_signed_in_at', mcpadmin.models.UTCDateTime(),
                                          nullable=True))
    op.create_index('ix_admin_user_oidc', 'admin_user', ['oidc_issuer', 'oidc_subject'],
                    unique=True)
    # No foreign key: see ``models.Agent.owner_id``.
    op.add_column('agent', sa.Column('owner_id', sa.Integer(), nullable=True))
    op.create_index('ix_agent_owner_id', 'agent', ['owner_id'])
    op.add_column('connector', sa.Column('members_may_use', sa.Boolean(), nullable=False,
                                         server_default='0'))
    op.add_column('audit_event', sa.Column('actor_role', sa.String(length=20), nullable=True))
    op.create_table(
        'invite',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_sha256', sa.String(length=64), nullable=False),
        sa.Column('role', sa.String(length=20), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=True),
        sa.Column('created_by', sa.String(length=80), nullable=True),
        sa.Column('created_at', mcpadmin.models.UTCDateTime(), nullable=False),
        sa.Column('expires_at', mcpadmin.models.UTCDateTime(), nullable=False),
        sa.Column('used_at', mcpadmin.models.UTCDateTime(), nullable=True),
        sa.Column('used_by', sa.String(length=80), nullable=True),
        sa.Column('revoked_at', mcpadmin.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_sha256'),
    )
    op.create_table(
        'sso_settings',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('issuer', sa.String(length=2048), nullable=True),
        sa.Column('client_id', sa.String(length=500), nullable=True),
        sa.Column('client_secret_enc', sa.Text(), nullable=True),
        sa.Column('label', sa.String(length=100), nullable=True),
        sa.Column('scopes', sa.String(length=500), nullable=True),
        sa.Column('allowed_domains', sa.JSON(), nullable=False),
        sa.Column('role_claim', sa.String(length=100), nullable=True),
        sa.Column('role_map', sa.JSON(), nullable=False),
        sa.Column('default_role', sa.String(length=20), nullable=True),
        sa.Column('local_passwords', sa.Boolean(), nullable=False),
        sa.Column('updated_at', mcpadmin.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table(
        'oidc_pending',
        sa.Column('state_sha256', sa.String(length=64), nullable=False),
        sa.Column('nonce', sa.String(length=100), nullable=False),
        sa.Column('code_verifier_enc', sa.Text(), nullable=False),
        sa.Column('invite_id', sa.Integer(), nullable=True),
        sa.Column('next_url', sa.String(length=2048), nullable=True),
        sa.Column('created_at', mcpadmin.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['invite_id'], ['invite.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('state_sha256'),
    )
    op.create_index('ix_oidc_pending_created_at', 'oidc_pending', ['created_at'])


def downgrade():
    op.drop_index('ix_oidc_pending_created_at', table_name='oidc_pending')
    op.drop_table('oidc_pending')
    op.drop_table('sso_settings')
    op.drop_table('invite')
    op.drop_column('audit_event', 'actor_role')
    op.drop_column('connector', 'members_may_use')
    op.drop_index('ix_agent_owner_id', table_name='agent')
    op.drop_column('agent', 'owner_id')
    op.drop_index('ix_admin_user_oidc', table_name='admin_user')
    for column in ('last_signed_in_at', 'deactivated_at', 'active', 'oidc_subject',
                   'oidc_issuer', 'display_name', 'email', 'role'):
        op.drop_column('admin_user', column)
