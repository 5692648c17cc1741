"""conversion adjustments: refunds and cancellations (attribution.md ATT-38)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa
import core.storage.types


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'conversion_adjustments',
        sa.Column('account_id', sa.String(length=40), nullable=False),
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('environment', sa.String(length=8), nullable=False),
        sa.Column('idempotency_key', sa.String(length=255), nullable=False),
        sa.Column('conversion_key', sa.String(length=255), nullable=False),
        sa.Column('conversion_id', sa.String(length=40), nullable=True),
        sa.Column('adjustment', sa.String(length=8), nullable=False),
        sa.Column('amount', sa.String(length=40), nullable=True),
        sa.Column('amount_minor', sa.BigInteger(), nullable=True),
        sa.Column('currency', sa.String(length=3), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('error', sa.String(length=200), nullable=True),
        sa.Column('properties', core.storage.types.JSONType, nullable=False),
        sa.Column('occurred_at', core.storage.types.UTCDateTime(), nullable=False),
        sa.Column('received_at', core.storage.types.UTCDateTime(), nullable=False),
        sa.Column('applied_at', core.storage.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('account_id', 'id'),
        sa.UniqueConstraint('account_id', 'environment', 'idempotency_key'),
    )
    op.create_index('ix_adjustments_key', 'conversion_adjustments', ['account_id', 'environment', 'conversion_key'])


def downgrade() -> None:
    op.drop_index('ix_adjustments_key', table_name='conversion_adjustments')
    op.drop_table('conversion_adjustments')
