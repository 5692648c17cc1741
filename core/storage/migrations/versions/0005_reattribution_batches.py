"""reattribution batches (attribution.md ATT-54)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa
import core.storage.types


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = core.storage.types.JSONType
    op.create_table(
        'reattribution_batches',
        sa.Column('account_id', sa.String(length=40), nullable=False),
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('environment', sa.String(length=8), nullable=False),
        sa.Column('trigger', sa.String(length=24), nullable=False),
        sa.Column('models', json, nullable=False),
        sa.Column('scope', json, nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('total', sa.Integer(), nullable=True),
        sa.Column('processed', sa.Integer(), nullable=False),
        sa.Column('failed_count', sa.Integer(), nullable=False),
        sa.Column('cursor', json, nullable=True),
        sa.Column('created_at', core.storage.types.UTCDateTime(), nullable=False),
        sa.Column('started_at', core.storage.types.UTCDateTime(), nullable=True),
        sa.Column('finished_at', core.storage.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('account_id', 'id'),
    )
    op.create_index('ix_batches_status', 'reattribution_batches', ['account_id', 'environment', 'status'])


def downgrade() -> None:
    op.drop_index('ix_batches_status', table_name='reattribution_batches')
    op.drop_table('reattribution_batches')
