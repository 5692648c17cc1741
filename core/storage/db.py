"""Engine and session factory, one per database URL.

Heroku-style URLs (``postgres://``) are accepted and mapped to psycopg 3. SQLite gets a busy timeout and WAL so
the embedded default survives several gunicorn threads.

PostgreSQL connections never outlive their owner, and a child never touches its parent's (quality.md Q-20;
docs/pipeline.md Q-20-D1). The RQ scheduler is a forked child of the worker; a connection it inherited (idle in
the pool, or checked out by the sweeper thread in the middle of a transaction at fork time) would keep the
worker's session, and its visitors' advisory locks, "idle in transaction" after `kill -9` of the worker, and a
Terminate or ROLLBACK the child sent on the shared socket would end the worker's live transaction. So, in every
forked child, each inherited PostgreSQL socket is replaced by /dev/null (the child's copy of the socket is closed
and whatever libpq later writes to it goes nowhere, reads see end of file) and every engine gets a fresh pool.
A connection being opened while another thread forks would escape that (its socket exists, it is not yet known):
opening a connection and forking exclude each other (``_CONNECTING``), so every socket a child inherits is a
known one. As a backstop a session left idle in a transaction is ended by the server after
``idle_in_transaction_timeout_ms`` (``MBUZZ_PG_IDLE_IN_TRANSACTION_TIMEOUT_MS``, one of the process settings,
``core.config``), releasing its locks.
"""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from core.config import CoreSettings
from core.storage.statistics import keep_statistics
from core.storage.types import json_loads

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# No code path waits this long inside a transaction without a statement; tests shorten it.

_POSTGRES_ENGINES: weakref.WeakSet[sa.Engine] = weakref.WeakSet()
_PG_CONNECTIONS: weakref.WeakSet[Any] = weakref.WeakSet()  # every psycopg connection this process opened


# Held while a PostgreSQL connection is opened and while the process forks, so a fork never happens between a
# socket's creation and its registration in ``_PG_CONNECTIONS`` (seen under load: the RQ scheduler, forked while
# the worker's first drain connected, kept that session idle in transaction after the worker was killed).
_CONNECTING = threading.Lock()


def _connect_registered(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
    with _CONNECTING:
        conn = dialect.connect(*cargs, **cparams)
        _PG_CONNECTIONS.add(conn)
    return conn


def _disown_inherited_connections() -> None:
    """Runs in a forked child, alone in it: the parent's PostgreSQL sockets become /dev/null here and the pools
    are replaced without closing anything, so nothing the child does can reach the parent's sessions and the
    parent's death closes them. Takes no lock (another thread of the parent may have held any at fork time)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for conn in list(_PG_CONNECTIONS):
            try:
                fd = conn.pgconn.socket
            except Exception:  # closed or lost: libpq holds no socket
                continue
            os.dup2(devnull, fd, inheritable=False)
    finally:
        os.close(devnull)
    _PG_CONNECTIONS.clear()
    for engine in list(_POSTGRES_ENGINES):
        engine.dispose(close=False)


def _after_fork_in_child() -> None:
    _CONNECTING.release()  # acquired by the forking thread before the fork: the child's copy is held
    _disown_inherited_connections()


os.register_at_fork(before=_CONNECTING.acquire, after_in_parent=_CONNECTING.release,
                    after_in_child=_after_fork_in_child)


def normalize_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://") :]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def engine_for(settings: CoreSettings) -> sa.Engine:
    """The process's engine, tuned by its settings (read once by the entry point)."""
    return make_engine(settings.database_url, idle_in_transaction_timeout_ms=settings.pg_idle_in_transaction_timeout_ms,
                       stats_every_s=settings.stats_every_s)


def make_engine(url: str, *, idle_in_transaction_timeout_ms: int = 60000, stats_every_s: float = 60.0,
                **kwargs: Any) -> sa.Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    # No automatic server-side prepared statements: the drain's preloads filter on ``= ANY(array)``, for which a
    # prepared statement's generic plan cannot know the array's length and PostgreSQL may pick a plan ten times
    # slower (issue 16; docs/performance.md).
    # Sessions in UTC: every timestamp is stored and handled as a UTC instant, and SQL that needs a local day names
    # its zone (``timezone(zone, ...)``), so this changes no result; psycopg then returns ``datetime.UTC``-aware
    # values that need no per-value conversion (``core.processors.rows``; issue 16).
    kwargs.setdefault("connect_args", {"options": f"-c idle_in_transaction_session_timeout="
                                                  f"{idle_in_transaction_timeout_ms} -c TimeZone=UTC",
                                       "prepare_threshold": None})
    # jsonb and json values are decoded by psycopg with this function (SQLAlchemy installs it on every connection).
    kwargs.setdefault("json_deserializer", json_loads)
    engine = sa.create_engine(url, **kwargs)
    event.listen(engine, "do_connect", _connect_registered)
    event.listen(engine, "connect", _binary_arrays)
    keep_statistics(engine, stats_every_s)  # planner statistics current even where autovacuum is off (Q-9-D1)
    _POSTGRES_ENGINES.add(engine)
    return engine


def _binary_arrays(dbapi_conn: Any, _record: Any) -> None:
    """Python lists go to PostgreSQL as binary arrays: the drain sends thousands of ids and times per statement
    (``unnest``, ``= ANY``), and psycopg's text array format quotes every element through a regular expression
    (7× slower for 2,000 timestamps, 5× for 2,000 ids; issue 16's profile)."""
    from psycopg.types.array import ListBinaryDumper

    dbapi_conn.adapters.register_dumper(list, ListBinaryDumper)


def session_factory(engine: sa.Engine) -> sessionmaker[Session]:
    import core.rollups  # noqa: F401  (registers the rollups' dirty-day hook on every session)

    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Alembic upgrade head on ``url``."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")
