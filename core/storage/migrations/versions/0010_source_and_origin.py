"""source and origin on connector rows

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa
import core.storage.types


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table('conversion_adjustments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('origin', sa.String(length=64), nullable=True))

    with op.batch_alter_table('conversions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column('origin', sa.String(length=64), nullable=True))

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column('origin', sa.String(length=64), nullable=True))

    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('origin', sa.String(length=64), nullable=True))




def downgrade() -> None:

    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_column('origin')

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('origin')
        batch_op.drop_column('source')

    with op.batch_alter_table('conversions', schema=None) as batch_op:
        batch_op.drop_column('origin')
        batch_op.drop_column('source')

    with op.batch_alter_table('conversion_adjustments', schema=None) as batch_op:
        batch_op.drop_column('origin')


