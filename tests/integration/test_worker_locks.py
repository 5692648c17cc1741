"""Q-20: a visitor's advisory lock held by an orphaned session does not stall its partition (issue 15 item 1).

An orphaned session (a killed worker's, kept open by a socket someone still holds) idles in its transaction
holding a visitor's `pg_advisory_xact_lock`. The drain must wait for it at most ``MBUZZ_DRAIN_LOCK_WAIT_MS``,
give the batch back without dead-lettering anything, keep draining other partitions meanwhile, and finish the
partition once the server has ended the idle session: every accepted command stored exactly once
(docs/pipeline.md Q-20-D2, Q-20-D3). Real gunicorn, RQ worker, PostgreSQL and Redis.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
import pytest
import redis
from flask import Flask

from core.queue import GROUP, dead_key, stream_key
from core.tenant import Tenant
from tests.conftest import new_account
from tests.integration.processes import start_worker, stop, wait_until
from tests.integration.test_reliability import (  # noqa: F401  (fixtures)
    PATIENCE,
    Client,
    assert_exactly_once,
    logs,
    redis_url,
    stack,
    stored_event_ids,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

GAVE_BACK = "the batch goes back to the log"


def visitor_lock_key(account_id: str, environment: str, visitor: str) -> int:
    """The advisory-lock key the processors take for a visitor (core.processors.context.lock_visitors)."""
    digest = hashlib.sha256(f"{account_id}|{environment}|{visitor}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def session_alive(database_url: str, pid: int) -> bool:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return bool(row and row[0])


def test_Q20_orphaned_session_holding_a_visitor_lock_does_not_stall_the_partition(
    app: Flask, stack: dict[str, Any], database_url: str, redis_url: str  # noqa: F811
) -> None:
    keys, logs_dir = stack["keys"], stack["logs"]
    tenant = Tenant(keys.account_id, "test")
    other = new_account(app, "Other")
    env = stack["env"] | {"MBUZZ_DRAIN_LOCK_WAIT_MS": "1000", "MBUZZ_SWEEP_INTERVAL_S": "1"}
    worker = start_worker(env, logs_dir / "worker.log")
    orphan = psycopg.connect(database_url)  # a transaction opens with the first statement and is never ended
    try:
        orphan.execute("SET idle_in_transaction_session_timeout = 0")  # idle for ever, until the test says
        orphan.execute("SELECT pg_advisory_xact_lock(%s)", (visitor_lock_key(keys.account_id, "test", "stuck"),))
        orphan_pid = orphan.info.backend_pid
        client = Client(stack["base"], keys)
        client.send_batch("stuck", 20)
        client.send_batch("free", 20)
        assert len(client.accepted) == 40 and client.modes == {"queued"}

        # The drain gives up at the lock wait and the batch goes back, again and again, dead-lettering nothing,
        # while the worker keeps serving another partition.
        log = logs_dir / "worker.log"
        assert wait_until(lambda: log.read_text().count(GAVE_BACK) >= 2, PATIENCE), "the drain never gave up"
        bystander = Client(stack["base"], other)
        bystander.send_batch("elsewhere", 20)
        assert wait_until(lambda: set(stored_event_ids(app, other.account_id)) == bystander.accepted, PATIENCE)
        assert session_alive(database_url, orphan_pid)
        assert stored_event_ids(app, keys.account_id) == []  # the batch is all or nothing
        r = redis.Redis.from_url(redis_url)
        assert r.xlen(stream_key(tenant)) == 40 and r.xpending(stream_key(tenant), GROUP)["pending"] > 0
        assert r.xlen(dead_key(tenant)) == 0
        assert worker.poll() is None

        # Now the orphan idles under a short timeout: the server ends it, and a later drain completes.
        orphan.execute("SET idle_in_transaction_session_timeout = '2s'")
        assert wait_until(lambda: not session_alive(database_url, orphan_pid), PATIENCE)
        assert_exactly_once(app, keys, client, redis_url)
        assert r.xlen(stream_key(tenant)) == 0
    finally:
        orphan.close()
        stop(worker)


def test_Q20_lock_wait_never_outlasts_the_partition_lock() -> None:
    """The lock wait is capped below the partition lock's lifetime, so a waiting drain keeps its partition."""
    from core.config import CoreSettings

    defaults = CoreSettings()
    assert 0 < defaults.drain_lock_wait <= defaults.drain_lock_ms // 2
    tight = CoreSettings.from_env({"MBUZZ_DRAIN_LOCK_MS": "3000", "MBUZZ_DRAIN_LOCK_WAIT_MS": "5000"})
    assert tight.drain_lock_wait == 1500
