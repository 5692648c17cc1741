"""dashboard session epoch; webhook ids unique per shop (issue 15 items 11 and 12)

``dashboard_users.session_epoch``: held in the signed session cookie and bumped by logout, so a copied cookie
stops working when its session is logged out (docs/dashboard.md DSH-2-D1).

``shopify_webhook_deliveries``: the webhook id is unique within a shop (``ux_deliveries_webhook``) instead of
globally, so a delivery recorded under another shop's header never turns the genuine delivery into a duplicate
(docs/shopify.md SHP-33-D1). Shopify's webhook ids are unique across shops, so genuine deliveries dedupe as before.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

TABLE = 'shopify_webhook_deliveries'
SQLITE_NAMES = {'uq': 'uq_%(table_name)s_%(column_0_name)s'}  # names 0008's unnamed UNIQUE (webhook_id)


def _webhook_unique_name(bind: sa.engine.Connection) -> str:
    for found in sa.inspect(bind).get_unique_constraints(TABLE):
        if found['column_names'] == ['webhook_id'] and found['name']:
            return str(found['name'])
    return 'shopify_webhook_deliveries_webhook_id_key'


def upgrade() -> None:
    with op.batch_alter_table('dashboard_users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_epoch', sa.Integer(), server_default=sa.text('0'), nullable=False))
    bind = op.get_bind()
    if bind.dialect.name == 'sqlite':
        # The table is rebuilt: the partial index is dropped first and made again after, predicate included.
        op.drop_index('ux_deliveries_event', table_name=TABLE)
        with op.batch_alter_table(TABLE, schema=None, naming_convention=SQLITE_NAMES) as batch_op:
            batch_op.drop_constraint('uq_shopify_webhook_deliveries_webhook_id', type_='unique')
        op.create_index('ux_deliveries_event', TABLE, ['shop_domain', 'topic', 'event_id'], unique=True,
                        sqlite_where=sa.text('event_id IS NOT NULL'))
    else:
        op.drop_constraint(_webhook_unique_name(bind), TABLE, type_='unique')
    op.create_index('ux_deliveries_webhook', TABLE, ['shop_domain', 'webhook_id'], unique=True)


def downgrade() -> None:
    op.drop_index('ux_deliveries_webhook', table_name=TABLE)
    if op.get_bind().dialect.name == 'sqlite':
        op.drop_index('ux_deliveries_event', table_name=TABLE)
        with op.batch_alter_table(TABLE, schema=None) as batch_op:
            batch_op.create_unique_constraint('uq_shopify_webhook_deliveries_webhook_id', ['webhook_id'])
        op.create_index('ux_deliveries_event', TABLE, ['shop_domain', 'topic', 'event_id'], unique=True,
                        sqlite_where=sa.text('event_id IS NOT NULL'))
    else:
        op.create_unique_constraint('shopify_webhook_deliveries_webhook_id_key', TABLE, ['webhook_id'])
    with op.batch_alter_table('dashboard_users', schema=None) as batch_op:
        batch_op.drop_column('session_epoch')
