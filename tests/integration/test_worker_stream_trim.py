"""The command log is trimmed: processed entries leave Redis, pending and unread ones never do (issue 15 item 6).

docs/pipeline.md Q-20-D4. Before, every stream grew for ever (108 MB after three drills, raw URLs included).
Real gunicorn, RQ workers (one SIGKILLed mid-drain), PostgreSQL and Redis; ids compared with what the clients
were told was accepted (Q-20).
"""

from __future__ import annotations

import signal
from typing import Any

import pytest
import redis
from flask import Flask

from core import jobs
from core.queue import CONSUMER, GROUP, stream_key
from core.tenant import Tenant
from tests.integration.processes import kill_group, start_worker, stop, wait_until
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

LEGACY = 300  # entries an older version acknowledged and left in the stream


def pending_ids(r: redis.Redis, stream: str) -> set[bytes]:
    return {p["message_id"] for p in r.xpending_range(stream, GROUP, "-", "+", 100_000)}


def test_Q20_log_is_trimmed_and_pending_entries_survive(
    app: Flask, stack: dict[str, Any], redis_url: str  # noqa: F811
) -> None:
    keys, logs_dir = stack["keys"], stack["logs"]
    tenant = Tenant(keys.account_id, "test")
    stream = stream_key(tenant)
    r = redis.Redis.from_url(redis_url)

    # What an older version left: processed entries, acknowledged but never deleted.
    jobs.ensure_group(r, stream)
    for i in range(LEGACY):
        r.xadd(stream, {"c": f'{{"legacy": {i}, "url": "https://shop.example/?email=a@example.com"}}'.encode()})
    r.xreadgroup(GROUP, CONSUMER, {stream: ">"}, count=LEGACY)
    r.xack(stream, GROUP, *[entry_id for entry_id, _ in r.xrange(stream)])

    client = Client(stack["base"], keys)
    client.load(3, threads=4, batch=50)  # a backlog, with no worker running
    assert client.accepted and client.modes == {"queued"}
    assert r.xlen(stream) == LEGACY + len(client.accepted)
    peak_memory = r.memory_usage(stream)

    worker = start_worker(stack["env"] | {"MBUZZ_DRAIN_BATCH": "200"}, logs_dir / "worker-1.log")
    try:
        assert wait_until(lambda: len(stored_event_ids(app, keys.account_id)) > 0 and bool(pending_ids(r, stream)),
                          PATIENCE, 0.02)
        worker.send_signal(signal.SIGKILL)  # mid-drain: its batch stays pending
        worker.wait(10)
    finally:
        kill_group(worker)
    stored = len(stored_event_ids(app, keys.account_id))
    assert stored < len(client.accepted), "the worker finished before it was killed"
    if not pending_ids(r, stream):  # killed between an ack and its next read: leave the state it leaves otherwise
        r.xreadgroup(GROUP, CONSUMER, {stream: ">"}, count=200)
    pending = pending_ids(r, stream)
    pending_fields = {entry_id: fields for entry_id, fields in r.xrange(stream) if entry_id in pending}
    unread = r.xinfo_groups(stream)[0]["lag"]
    assert pending and unread > 0

    # What the drain acknowledged has left the log; a sweep (the worker's own, or this one) trims the legacy
    # entries below the oldest pending one, and keeps every pending and unread entry with its data.
    assert r.xlen(stream) in (LEGACY + len(pending) + unread, len(pending) + unread)
    jobs.sweep(r)
    assert r.xlen(stream) == len(pending) + unread
    assert pending_ids(r, stream) == pending
    assert {entry_id: fields for entry_id, fields in r.xrange(stream) if entry_id in pending} == pending_fields

    replacement = start_worker(stack["env"], logs_dir / "worker-2.log")
    try:
        assert_exactly_once(app, keys, client, redis_url)  # the pending batch too, once
        assert wait_until(lambda: r.xlen(stream) == 0, PATIENCE)
    finally:
        stop(replacement)
    info = r.xinfo_stream(stream)
    assert info["length"] == 0 and r.xinfo_groups(stream)[0]["pending"] == 0
    assert r.memory_usage(stream) < peak_memory / 10, (r.memory_usage(stream), peak_memory)
