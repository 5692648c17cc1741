"""visitor aliases (sgtm.md SGTM-23)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa
import core.storage.types


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'visitor_aliases',
        sa.Column('account_id', sa.String(length=40), nullable=False),
        sa.Column('environment', sa.String(length=8), nullable=False),
        sa.Column('namespace', sa.String(length=16), nullable=False),
        sa.Column('alias', sa.String(length=255), nullable=False),
        sa.Column('visitor_key', sa.String(length=255), nullable=False),
        sa.Column('created_at', core.storage.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('account_id', 'environment', 'namespace', 'alias'),
    )


def downgrade() -> None:
    op.drop_table('visitor_aliases')
