"""shopify installations and the webhook ledger (shopify.md SHP-7, SHP-8)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa
import core.storage.types


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = core.storage.types.JSONType
    ts = core.storage.types.UTCDateTime
    op.create_table(
        'installations',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('shop_domain', sa.String(length=255), nullable=False),
        sa.Column('shop_gid', sa.String(length=255), nullable=True),
        sa.Column('shop_name', sa.String(length=255), nullable=True),
        sa.Column('primary_domain', sa.String(length=255), nullable=True),
        sa.Column('domains', json, nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=True),
        sa.Column('iana_timezone', sa.String(length=64), nullable=True),
        sa.Column('plan_partner_development', sa.Boolean(), nullable=False),
        sa.Column('account_id', sa.String(length=40), nullable=True),
        sa.Column('environment', sa.String(length=8), nullable=False),
        sa.Column('mode', sa.String(length=8), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('access_token_enc', sa.Text(), nullable=True),
        sa.Column('refresh_token_enc', sa.Text(), nullable=True),
        sa.Column('token_expires_at', ts(), nullable=True),
        sa.Column('refresh_expires_at', ts(), nullable=True),
        sa.Column('token_status', sa.String(length=8), nullable=False),
        sa.Column('scopes', sa.Text(), nullable=True),
        sa.Column('pixel_id', sa.String(length=255), nullable=True),
        sa.Column('pixel_last_seen_at', ts(), nullable=True),
        sa.Column('manual_signing_key_enc', sa.Text(), nullable=True),
        sa.Column('connector_token_sha256', sa.String(length=64), nullable=True),
        sa.Column('settings', json, nullable=False),
        sa.Column('installed_at', ts(), nullable=True),
        sa.Column('uninstalled_at', ts(), nullable=True),
        sa.Column('created_at', ts(), nullable=False),
        sa.Column('updated_at', ts(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('shop_domain'),
    )
    op.create_table(
        'shopify_webhook_deliveries',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('webhook_id', sa.String(length=255), nullable=False),
        sa.Column('event_id', sa.String(length=255), nullable=True),
        sa.Column('topic', sa.String(length=64), nullable=False),
        sa.Column('shop_domain', sa.String(length=255), nullable=False),
        sa.Column('api_version', sa.String(length=16), nullable=True),
        sa.Column('triggered_at', sa.String(length=40), nullable=True),
        sa.Column('received_at', ts(), nullable=False),
        sa.Column('body_sha256', sa.String(length=64), nullable=False),
        sa.Column('body_enc', sa.Text(), nullable=True),
        sa.Column('customer_id', sa.String(length=32), nullable=True),
        sa.Column('order_id', sa.String(length=32), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('error', sa.String(length=200), nullable=True),
        sa.Column('redeliveries', sa.Integer(), nullable=False),
        sa.Column('processed_at', ts(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('webhook_id'),
    )
    op.create_index('ux_deliveries_event', 'shopify_webhook_deliveries', ['shop_domain', 'topic', 'event_id'],
                    unique=True, postgresql_where=sa.text('event_id IS NOT NULL'),
                    sqlite_where=sa.text('event_id IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ux_deliveries_event', table_name='shopify_webhook_deliveries')
    op.drop_table('shopify_webhook_deliveries')
    op.drop_table('installations')
