"""Engine and session factory, one per database URL.

Heroku-style URLs (``postgres://``) are accepted and mapped to psycopg 3. SQLite gets a busy timeout and WAL so
the embedded default survives several gunicorn threads.

PostgreSQL connections never outlive their owner (quality.md Q-20): a forked child (the RQ scheduler a worker
forks) must not inherit a pooled connection, or after `kill -9` of the worker the child keeps the socket open and
the worker's transaction, with its visitors' advisory locks, stays "idle in transaction" for ever. So every
PostgreSQL engine's idle connections are closed in the parent right before a fork, and a session left idle in a
transaction is ended by the server after ``IDLE_IN_TRANSACTION_TIMEOUT_MS``, releasing its locks.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000  # no code path waits this long inside a transaction without a statement

_POSTGRES_ENGINES: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def _close_pooled_connections_before_fork() -> None:
    """Runs in the parent just before `os.fork()`: idle pooled connections are closed (and reopened on demand)
    so the child holds none of them. Subprocesses started with `subprocess` do not run this hook."""
    for engine in list(_POSTGRES_ENGINES):
        engine.dispose()


os.register_at_fork(before=_close_pooled_connections_before_fork)


def normalize_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://") :]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str, **kwargs: Any) -> sa.Engine:
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
    kwargs.setdefault("connect_args", {"options": f"-c idle_in_transaction_session_timeout="
                                                  f"{IDLE_IN_TRANSACTION_TIMEOUT_MS}"})
    engine = sa.create_engine(url, **kwargs)
    _POSTGRES_ENGINES.add(engine)
    return engine


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
