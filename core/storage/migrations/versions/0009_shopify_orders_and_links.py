"""shopify orders, checkout links, customers, oauth states, connect codes, data requests, settings audit, sgtm order links

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa
import core.storage.types

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('sgtm_order_links',
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('environment', sa.String(length=8), nullable=False),
    sa.Column('transaction_id', sa.String(length=255), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('visitor_id', sa.String(length=255), nullable=True),
    sa.Column('ga_client_id', sa.String(length=100), nullable=True),
    sa.Column('occurred_at', core.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('hold_until', core.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('merged_into', sa.String(length=255), nullable=True),
    sa.Column('data', core.storage.types.JSONType, nullable=False),
    sa.Column('created_at', core.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', core.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'id'),
    sa.UniqueConstraint('account_id', 'environment', 'transaction_id')
    )
    with op.batch_alter_table('sgtm_order_links', schema=None) as batch_op:
        batch_op.create_index('ix_sgtm_links_hold', ['status', 'hold_until'], unique=False)

    op.create_table('shopify_checkout_links',
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('environment', sa.String(length=8), nullable=False),
    sa.Column('installation_id', sa.String(length=40), nullable=False),
    sa.Column('checkout_token', sa.String(length=255), nullable=False),
    sa.Column('order_id', sa.String(length=32), nullable=True),
    sa.Column('visitor_id', sa.String(length=255), nullable=False),
    sa.Column('shopify_client_id', sa.String(length=100), nullable=True),
    sa.Column('is_first_order', sa.Boolean(), nullable=True),
    sa.Column('first_seen_at', core.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', core.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'id'),
    sa.UniqueConstraint('account_id', 'installation_id', 'checkout_token')
    )
    with op.batch_alter_table('shopify_checkout_links', schema=None) as batch_op:
        batch_op.create_index('ix_checkout_links_order', ['installation_id', 'order_id'], unique=False)

    op.create_table('shopify_connect_codes',
    sa.Column('code_sha256', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('environment', sa.String(length=8), nullable=False),
    sa.Column('expires_at', core.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', core.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', core.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('code_sha256')
    )
    op.create_table('shopify_customers',
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('installation_id', sa.String(length=40), nullable=False),
    sa.Column('customer_id', sa.String(length=32), nullable=False),
    sa.Column('environment', sa.String(length=8), nullable=False),
    sa.Column('updated_at_source', core.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'installation_id', 'customer_id')
    )
    op.create_table('shopify_data_requests',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('shop_domain', sa.String(length=255), nullable=False),
    sa.Column('data_request_id', sa.String(length=32), nullable=True),
    sa.Column('customer_id', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('export_enc', sa.Text(), nullable=True),
    sa.Column('created_at', core.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ready_at', core.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expires_at', core.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('shopify_data_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shopify_data_requests_shop_domain'), ['shop_domain'], unique=False)

    op.create_table('shopify_oauth_states',
    sa.Column('nonce_sha256', sa.String(length=64), nullable=False),
    sa.Column('shop_domain', sa.String(length=255), nullable=False),
    sa.Column('expires_at', core.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', core.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', core.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('nonce_sha256')
    )
    op.create_table('shopify_orders',
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('environment', sa.String(length=8), nullable=False),
    sa.Column('installation_id', sa.String(length=40), nullable=False),
    sa.Column('order_id', sa.String(length=32), nullable=False),
    sa.Column('order_gid', sa.String(length=255), nullable=True),
    sa.Column('name', sa.String(length=64), nullable=True),
    sa.Column('order_number', sa.BigInteger(), nullable=True),
    sa.Column('confirmation_number', sa.String(length=64), nullable=True),
    sa.Column('checkout_token', sa.String(length=255), nullable=True),
    sa.Column('source_name', sa.String(length=64), nullable=True),
    sa.Column('app_id', sa.String(length=32), nullable=True),
    sa.Column('test', sa.Boolean(), nullable=False),
    sa.Column('customer_id', sa.String(length=32), nullable=True),
    sa.Column('email_sha256', sa.String(length=64), nullable=True),
    sa.Column('processed_at', core.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('shop_currency', sa.String(length=3), nullable=True),
    sa.Column('presentment_currency', sa.String(length=3), nullable=True),
    sa.Column('shop_total', sa.String(length=40), nullable=True),
    sa.Column('shop_subtotal', sa.String(length=40), nullable=True),
    sa.Column('presentment_total', sa.String(length=40), nullable=True),
    sa.Column('fx_ratio', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attribution_method', sa.String(length=32), nullable=True),
    sa.Column('visitor_id', sa.String(length=255), nullable=True),
    sa.Column('conversion_key', sa.String(length=255), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('first_attempt_at', core.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('next_attempt_at', core.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', core.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('linking', core.storage.types.JSONType, nullable=False),
    sa.Column('created_at', core.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', core.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'id'),
    sa.UniqueConstraint('account_id', 'installation_id', 'order_id')
    )
    with op.batch_alter_table('shopify_orders', schema=None) as batch_op:
        batch_op.create_index('ix_shopify_orders_customer', ['account_id', 'installation_id', 'customer_id'], unique=False)
        batch_op.create_index('ix_shopify_orders_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_shopify_orders_name', ['account_id', 'environment', 'name'], unique=False)

    op.create_table('shopify_settings_audit',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('installation_id', sa.String(length=40), nullable=False),
    sa.Column('staff_user_id', sa.String(length=64), nullable=True),
    sa.Column('field', sa.String(length=32), nullable=False),
    sa.Column('old', core.storage.types.JSONType, nullable=True),
    sa.Column('new', core.storage.types.JSONType, nullable=True),
    sa.Column('at', core.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('shopify_settings_audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shopify_settings_audit_installation_id'), ['installation_id'], unique=False)
    with op.batch_alter_table('visitor_aliases', schema=None) as batch_op:
        batch_op.alter_column('namespace', existing_type=sa.String(length=16), type_=sa.String(length=64))


def downgrade() -> None:
    with op.batch_alter_table('visitor_aliases', schema=None) as batch_op:
        batch_op.alter_column('namespace', existing_type=sa.String(length=64), type_=sa.String(length=16))

    with op.batch_alter_table('shopify_settings_audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shopify_settings_audit_installation_id'))

    op.drop_table('shopify_settings_audit')
    with op.batch_alter_table('shopify_orders', schema=None) as batch_op:
        batch_op.drop_index('ix_shopify_orders_name')
        batch_op.drop_index('ix_shopify_orders_due')
        batch_op.drop_index('ix_shopify_orders_customer')

    op.drop_table('shopify_orders')
    op.drop_table('shopify_oauth_states')
    with op.batch_alter_table('shopify_data_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shopify_data_requests_shop_domain'))

    op.drop_table('shopify_data_requests')
    op.drop_table('shopify_customers')
    op.drop_table('shopify_connect_codes')
    with op.batch_alter_table('shopify_checkout_links', schema=None) as batch_op:
        batch_op.drop_index('ix_checkout_links_order')

    op.drop_table('shopify_checkout_links')
    with op.batch_alter_table('sgtm_order_links', schema=None) as batch_op:
        batch_op.drop_index('ix_sgtm_links_hold')

    op.drop_table('sgtm_order_links')

