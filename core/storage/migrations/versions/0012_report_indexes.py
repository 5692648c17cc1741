"""events and sessions: indexes on (tenant, time, id) for the data API's lists (api.md API-121, API-126, API-127)

The lists read one tenant's rows in a date range, ordered by (time, id) for keyset pagination. The existing
indexes lead with the visitor, so without these a range read scanned the tenant's whole history. Conversions
already have ``ix_conversions_time`` and credits ``ix_credits_report``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_events_time', 'events', ['account_id', 'environment', 'occurred_at', 'id'])
    op.create_index('ix_sessions_time', 'sessions', ['account_id', 'environment', 'started_at', 'id'])


def downgrade() -> None:
    op.drop_index('ix_sessions_time', table_name='sessions')
    op.drop_index('ix_events_time', table_name='events')
