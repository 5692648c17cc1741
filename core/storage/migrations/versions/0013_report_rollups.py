"""report rollups: daily credit and conversion totals for the dashboard and data API (DSH-22, Q-7)

Overview and Channels aggregate every credit row of the range; at a million conversions that is several million
rows per page. The rollups hold one row per local day × model × channel × currency × conversion type × funnel,
kept exact by dirty-day marks written with every change to a conversion or its credits (``core.rollups``).
Existing tenants are built on their first report read (in the background when large), or by
`flask --app gateway mbuzz build-rollups`.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

ID = sa.String(40)
KEY = sa.String(255)
ENV = sa.String(8)


def upgrade() -> None:
    op.create_table(
        'report_credit_days',
        sa.Column('account_id', ID, primary_key=True),
        sa.Column('environment', ENV, primary_key=True),
        sa.Column('day', sa.Date, primary_key=True),
        sa.Column('model', sa.String(16), primary_key=True),
        sa.Column('channel', sa.String(32), primary_key=True),
        sa.Column('currency', sa.String(3), primary_key=True),
        sa.Column('conversion_type', KEY, primary_key=True),
        sa.Column('funnel', KEY, primary_key=True),
        sa.Column('units', sa.BigInteger, nullable=False),
        sa.Column('revenue_minor', sa.BigInteger, nullable=False),
        sa.Column('touchpoints', sa.BigInteger, nullable=False),
    )
    op.create_table(
        'report_conversion_days',
        sa.Column('account_id', ID, primary_key=True),
        sa.Column('environment', ENV, primary_key=True),
        sa.Column('day', sa.Date, primary_key=True),
        sa.Column('conversion_type', KEY, primary_key=True),
        sa.Column('funnel', KEY, primary_key=True),
        sa.Column('currency', sa.String(3), primary_key=True),
        sa.Column('conversions', sa.BigInteger, nullable=False),
        sa.Column('revenue_minor', sa.BigInteger, nullable=False),
        sa.Column('with_revenue', sa.BigInteger, nullable=False),
        sa.Column('unattributed', sa.BigInteger, nullable=False),
        sa.Column('unattributed_revenue_minor', sa.BigInteger, nullable=False),
        sa.Column('unattributed_with_revenue', sa.BigInteger, nullable=False),
    )
    op.create_table(
        'report_dirty_days',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer, 'sqlite'), primary_key=True, autoincrement=True),
        sa.Column('account_id', ID, nullable=False),
        sa.Column('environment', ENV, nullable=False),
        sa.Column('day', sa.Date, nullable=False),
    )
    op.create_index('ix_report_dirty_tenant', 'report_dirty_days', ['account_id', 'environment', 'id'])
    op.create_table(
        'report_rollup_states',
        sa.Column('account_id', ID, primary_key=True),
        sa.Column('environment', ENV, primary_key=True),
        sa.Column('tz', sa.String(64), nullable=True),
        sa.Column('built_at', sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table('report_rollup_states')
    op.drop_index('ix_report_dirty_tenant', table_name='report_dirty_days')
    op.drop_table('report_dirty_days')
    op.drop_table('report_conversion_days')
    op.drop_table('report_credit_days')
