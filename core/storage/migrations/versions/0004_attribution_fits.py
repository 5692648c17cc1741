"""attribution fits (attribution.md ATT-30)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa
import core.storage.types


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = core.storage.types.JSONType
    op.create_table(
        'attribution_fits',
        sa.Column('account_id', sa.String(length=40), nullable=False),
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('environment', sa.String(length=8), nullable=False),
        sa.Column('model', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=24), nullable=False),
        sa.Column('as_of', core.storage.types.UTCDateTime(), nullable=False),
        sa.Column('window_start', core.storage.types.UTCDateTime(), nullable=False),
        sa.Column('settings', json, nullable=False),
        sa.Column('converting_paths', sa.BigInteger(), nullable=False),
        sa.Column('total_paths', sa.BigInteger(), nullable=False),
        sa.Column('channels', json, nullable=False),
        sa.Column('values', json, nullable=False),
        sa.Column('conversion_probability', sa.String(length=24), nullable=True),
        sa.Column('excluded_channels', json, nullable=False),
        sa.Column('duration_ms', sa.Integer(), nullable=False),
        sa.Column('created_at', core.storage.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('account_id', 'id'),
    )
    op.create_index('ix_fits_current', 'attribution_fits', ['account_id', 'environment', 'model', 'as_of'])


def downgrade() -> None:
    op.drop_index('ix_fits_current', table_name='attribution_fits')
    op.drop_table('attribution_fits')
