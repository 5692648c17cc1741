"""Shared fixtures: a real database per test run (PostgreSQL by default, SQLite in the quick pass).

``MBUZZ_TEST_DATABASE_URL`` picks the database: a PostgreSQL URL (each xdist worker gets its own fresh
database derived from it) or ``sqlite``. Tests isolate themselves by creating their own account, which is
also what tenant scoping guarantees in production.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid

# Each test process gets its own Redis namespace (streams, queue, locks) and passes it to the processes it
# starts, so parallel workers and concurrent runs never drain each other's commands.
os.environ.setdefault("MBUZZ_REDIS_PREFIX", f"mbuzz-test-{uuid.uuid4().hex[:8]}")
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from core import accounts
from core.storage.db import make_engine, migrate
from core.storage.tenancy import ALL_TENANTS, unscoped
from gateway import create_app
from gateway.config import Settings

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/mbuzz_test"
SHARED = Path(os.environ.get("MBUZZ_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))


def _pg_reachable(url: str) -> bool:
    try:
        engine = make_engine(url.rsplit("/", 1)[0] + "/postgres")
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


def _fresh_postgres(url: str, worker: str) -> str:
    base, name = url.rsplit("/", 1)
    name = f"{name}_{worker}_{os.getpid()}"  # unique per process: concurrent runs never drop each other's
    admin = make_engine(base + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{base}/{name}"


_UNSCOPED: list[str] = []  # statements of the running test that read a tenant table without its tenant


@sa.event.listens_for(sa.engine.Engine, "before_cursor_execute")
def _tenant_guard(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
    """Issue 18 item 3 (core/storage/tenancy.py): every statement any test runs in this process is checked."""
    if context is not None and context.execution_options.get(ALL_TENANTS):
        return
    tables = unscoped(statement)
    if tables and (origin := _product_frame()) is not None:
        _UNSCOPED.append(f"{', '.join(tables)} in {origin}: {' '.join(statement.split())[:300]}")


_TEST_TOOLING = (f"{os.sep}tests{os.sep}", f"{os.sep}tools{os.sep}")  # issue 18 item 6: test code, not product
_PRODUCT = tuple(f"{os.sep}{package}{os.sep}" for package in ("core", "edge", "gateway", "connectors"))


def _product_frame() -> str | None:
    """The innermost frame of product code that ran the statement; None for a test's own query (or a migration)."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if any(folder in name for folder in _TEST_TOOLING):
            return None
        part = next((p for p in _PRODUCT if p in name), None)
        if part is not None and f"{os.sep}migrations{os.sep}" not in name:
            return f"{name[name.rfind(part) + 1:]}:{frame.f_code.co_name}"
        frame = frame.f_back
    return None


@pytest.fixture(autouse=True)
def _every_query_names_its_tenant() -> Iterator[None]:
    _UNSCOPED.clear()
    yield
    found, _UNSCOPED[:] = list(_UNSCOPED), []
    if os.environ.get("MBUZZ_TENANT_GUARD_REPORT"):
        with open(os.environ["MBUZZ_TENANT_GUARD_REPORT"], "a") as report:
            report.writelines(f"{line}\n" for line in found)
        return
    assert not found, "tenant tables read without their tenant (core/storage/tenancy.py):\n" + "\n".join(found)


@pytest.fixture(scope="session")
def database_url(worker_id: str) -> Iterator[str]:
    wanted = os.environ.get("MBUZZ_TEST_DATABASE_URL")
    if wanted is None:
        if _pg_reachable(DEFAULT_PG):
            wanted = DEFAULT_PG
        elif os.environ.get("CI"):
            pytest.exit("CI: PostgreSQL is required on 127.0.0.1:5432", returncode=3)
        else:
            wanted = "sqlite"
    if wanted == "sqlite":
        folder = tempfile.mkdtemp(prefix="mbuzz-test-")
        url = f"sqlite:///{folder}/test.db"
    else:
        if not _pg_reachable(wanted):
            pytest.exit(f"PostgreSQL not reachable at {wanted}", returncode=3)
        url = _fresh_postgres(wanted, worker_id)
    migrate(url)
    yield url
    if url.startswith("postgresql"):
        base, name = url.rsplit("/", 1)
        admin = make_engine(base + "/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def is_postgres(database_url: str) -> bool:
    return database_url.startswith("postgresql")


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": None,
        "secret_key": "test-secret",
        "ratelimit_auth_failures": "100000 per minute",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def app(database_url: str) -> Flask:
    return create_app(make_settings(database_url))


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclass
class AccountKeys:
    account_id: str
    test_key: str
    live_key: str

    def headers(self, env: str = "test", **extra: str) -> dict[str, str]:
        key = self.test_key if env == "test" else self.live_key
        return {"Authorization": f"Bearer {key}", **extra}


def new_account(app: Flask, name: str = "Acme") -> AccountKeys:
    with app.config["MBUZZ"].sessions.begin() as db:
        account, test_key, live_key = accounts.create_account(db, name)
    return AccountKeys(account.id, test_key.plaintext, live_key.plaintext)


@pytest.fixture()
def acct(app: Flask) -> AccountKeys:
    return new_account(app)


@pytest.fixture()
def other_acct(app: Flask) -> AccountKeys:
    return new_account(app, "Other Inc")


LIMITS_REDIS_URL = os.environ.get("MBUZZ_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture()
def limits_store() -> Iterator[Any]:
    """The Redis of the rate-limit tests (skipped without Redis, except in CI); their keys go afterwards."""
    import redis

    client = redis.Redis.from_url(LIMITS_REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            raise
        pytest.skip("Redis is not reachable")
    yield client
    prefix = os.environ["MBUZZ_REDIS_PREFIX"]
    for key in client.scan_iter(f"{prefix}:limits:*", count=1000):
        client.delete(key)
    client.close()
