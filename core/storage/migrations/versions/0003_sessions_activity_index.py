"""sessions: index on (visitor, last_activity_at); analyze the ingest tables early

The drain's set-based lookups (``= ANY`` of a batch's keys) are planned from table statistics. A tenant that
grows by 100k rows a minute outruns autovacuum's default analyze trigger (10 % of the table), and with stale
statistics PostgreSQL filters every visitor of the account against the batch's 500 keys instead of using the
unique index: the drain got twice as slow at 100k stored events (Q-9). Re-analysing after 1 % of change keeps
the plans on the indexes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


HOT_TABLES = ("visitors", "sessions", "events", "visitor_links", "session_bindings", "idempotency_keys",
              "conversions", "users")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in HOT_TABLES:
            op.execute(f"ALTER TABLE {table} SET (autovacuum_analyze_scale_factor = 0.01, "
                       "autovacuum_analyze_threshold = 1000)")
    # The batch preload asks for each visitor's sessions still active near the batch window
    # (last_activity_at >= start - 30 min); without this index that reads all of a visitor's history.
    op.create_index('ix_sessions_activity', 'sessions',
                    ['account_id', 'environment', 'visitor_id', 'last_activity_at'])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in HOT_TABLES:
            op.execute(f"ALTER TABLE {table} RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold)")
    op.drop_index('ix_sessions_activity', table_name='sessions')
