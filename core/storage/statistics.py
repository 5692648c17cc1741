"""Planner statistics kept current by the application itself (issue 16 item 4, Q-9; docs/performance.md Q-9-D1).

PostgreSQL plans every query from its table statistics. Migration 0003 asks autovacuum to re-analyse the ingest
tables after 1 % of change, but that only works where autovacuum runs and keeps up: on a server with it switched
off (this project's CI machine, some managed setups) a table is never analysed, and the planner guesses. One
guess measured here: a conversion's candidate sessions (its visitor, 90 days) were read through the tenant's
time index, filtering every session of the window (4 ms at 10,000 sessions, growing with the tenant) instead of
the visitor's index (0.03 ms once ``sessions`` had statistics; both by EXPLAIN ANALYZE).

So a PostgreSQL engine refreshes its own statistics: after a commit, at most once per ``every_s``
(``MBUZZ_STATS_EVERY_S``, ``core.config``) per process and in a background thread (no request or drain batch waits
for it), every table of ours whose rows changed by more than the 0003 thresholds since its last analyse (by anyone,
autovacuum included) is analysed. One process at a time does it (a transaction-scoped advisory lock, tried, never
waited for). """

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

log = logging.getLogger("mbuzz.statistics")

# The same trigger migration 0003 gives autovacuum: 1,000 rows plus 1 % of the table.
CHANGED_ROWS = 1000
CHANGED_SHARE = 0.01
_LOCK_KEY = 0x6D627A7A_73746174  # "mbzzstat": one refresh at a time across processes

_STALE_TABLES = sa.text(
    "SELECT s.relname FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid "
    "WHERE s.schemaname = current_schema() AND s.n_mod_since_analyze >= :rows + :share * GREATEST(c.reltuples, 0) "
    "ORDER BY s.relname"
)


def refresh_statistics(engine: sa.Engine) -> list[str]:
    """ANALYZE the tables whose statistics are stale; returns their names (none when another process is at it)."""
    with engine.begin() as conn:
        if not conn.scalar(sa.text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _LOCK_KEY}):
            return []
        stale = list(conn.scalars(_STALE_TABLES, {"rows": CHANGED_ROWS, "share": CHANGED_SHARE}))
        for table in stale:
            conn.execute(sa.text(f'ANALYZE "{table}"'))
    return stale


class StatisticsKeeper:
    """Runs ``refresh_statistics`` in a daemon thread when ``nudge`` is called and ``every_s`` has passed since the
    last run (the first run comes ``every_s`` after the keeper is made)."""

    def __init__(self, engine: sa.Engine, every_s: float, clock: Any = time.monotonic,
                 refresh: Callable[[sa.Engine], list[str]] = refresh_statistics) -> None:
        self._engine = engine
        self._refresh_tables = refresh
        self._every_s = every_s
        self._clock = clock
        self._next = clock() + every_s
        self._lock = threading.Lock()

    def nudge(self) -> bool:
        """Start a refresh when one is due; True when one was started. Cheap: a clock read and a comparison."""
        if self._every_s <= 0 or self._clock() < self._next:
            return False
        with self._lock:
            if self._clock() < self._next:
                return False
            self._next = self._clock() + self._every_s
        threading.Thread(target=self._refresh, name="mbuzz-statistics", daemon=True).start()
        return True

    def _refresh(self) -> None:
        try:
            analysed = self._refresh_tables(self._engine)
        except Exception:  # the database away or busy: the next due nudge tries again
            log.warning("refreshing planner statistics failed", exc_info=True)
            return
        if analysed:
            log.info("planner statistics refreshed: %s", ", ".join(analysed))


def keep_statistics(engine: sa.Engine, every_s: float) -> StatisticsKeeper:
    """Nudge a keeper after every commit on ``engine`` (a PostgreSQL engine)."""
    keeper = StatisticsKeeper(engine, every_s)
    sa.event.listen(engine, "commit", lambda _conn: keeper.nudge())
    return keeper
