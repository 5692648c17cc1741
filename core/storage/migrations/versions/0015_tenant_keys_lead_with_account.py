"""report_dirty_days keyed by (account_id, id) (issue 18 item 9; docs/scale-out.md)

Citus distributes tenant tables by ``account_id`` and needs every primary and unique key of a distributed table to
include it (core/storage/distribution.py holds every tenant table to keys that lead with it). ``report_dirty_days``
was the one tenant table keyed by a serial ``id`` alone. The serial stays (its sequence numbers the marks); only the
key changes, so every row is kept as it is.

PostgreSQL only: on SQLite ``id`` stays the rowid key (``INTEGER PRIMARY KEY``), the only column SQLite numbers by
itself — a composite key there would leave new marks without an id. SQLite is one file on one machine; Citus does
not apply to it.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-14
"""
import sqlalchemy as sa
from alembic import op


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

TABLE = 'report_dirty_days'


def _primary_key_name(bind: sa.engine.Connection) -> str:
    return str(sa.inspect(bind).get_pk_constraint(TABLE).get('name') or f'{TABLE}_pkey')


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return
    name = _primary_key_name(bind)
    op.drop_constraint(name, TABLE, type_='primary')
    op.create_primary_key(name, TABLE, ['account_id', 'id'])


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return
    name = _primary_key_name(bind)
    op.drop_constraint(name, TABLE, type_='primary')
    op.create_primary_key(name, TABLE, ['id'])
