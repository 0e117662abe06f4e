"""connector.listing_hash: the digest of the listing the tool rows hold (shared connectors)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    # NULL on every existing row: each connector's next sync compares tool by tool once.
    with op.batch_alter_table('connector') as batch:
        batch.add_column(sa.Column('listing_hash', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('connector') as batch:
        batch.drop_column('listing_hash')
