"""Q-21: drain workers outlive a Redis outage (issue 15 item 4; docs/pipeline.md Q-21-D1).

In the drill one of two workers exited ("found an unhandled exception, quitting") when Redis dropped under
load, and nothing restarted it. Here two real workers reach Redis through a proxy that is cut for several
seconds while clients keep sending (the gateway still reaches Redis, so the log keeps growing); after the
restore both worker processes are alive and every accepted command is processed exactly once.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from flask import Flask

from core import jobs
from tests.integration.processes import Proxy, start_worker, stop
from tests.integration.test_reliability import (  # noqa: F401  (fixtures)
    Client,
    assert_exactly_once,
    logs,
    redis_url,
    stack,
)


@pytest.mark.postgres
@pytest.mark.redis
def test_Q21_both_workers_survive_a_redis_outage_under_load(
    app: Flask, stack: dict[str, Any], redis_url: str  # noqa: F811
) -> None:
    keys, logs_dir = stack["keys"], stack["logs"]
    parts = urlsplit(redis_url)
    proxy = Proxy(parts.port or 6379)
    proxied = urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))
    env = stack["env"] | {"REDIS_URL": proxied, "MBUZZ_DRAIN_BATCH": "100", "MBUZZ_SWEEP_INTERVAL_S": "1"}
    workers = [start_worker(env, logs_dir / f"worker-{i}.log") for i in (1, 2)]
    try:
        client = Client(stack["base"], keys)
        loader = threading.Thread(target=client.load, args=(12,), kwargs={"threads": 4, "batch": 20})
        loader.start()
        time.sleep(3)  # the workers are draining
        proxy.cut()  # Redis goes away for the workers only
        time.sleep(6)
        proxy.restore()
        loader.join()
        assert client.accepted and set(client.statuses) == {202}, client.statuses
        assert_exactly_once(app, keys, client, redis_url)
        for i, worker in enumerate(workers, 1):
            assert worker.poll() is None, f"worker {i} exited; see {logs_dir / f'worker-{i}.log'}"
        text = "".join((logs_dir / f"worker-{i}.log").read_text(errors="replace") for i in (1, 2))
        assert "Error" in text  # the outage was seen (and survived), not slept through
    finally:
        for worker in workers:
            stop(worker)
        proxy.close()


def test_Q21_background_loops_back_off_and_carry_on() -> None:
    """keep_running: a failing step is retried after a doubling pause (capped), never stops the loop or the other
    steps, and a good round restores the interval."""
    outcomes = iter([True, False, False, False, False, False, False, True, True])
    calls: list[str] = []
    pauses: list[float] = []

    def flaky() -> None:
        calls.append("flaky")
        if not next(outcomes):
            raise ConnectionError("Redis is away")

    def steady() -> None:
        calls.append("steady")

    jobs.keep_running([("flaky", flaky), ("steady", steady)], 5.0, sleep=pauses.append, rounds=9)
    assert calls == ["flaky", "steady"] * 9  # a failing step never skips the others
    assert pauses == [5.0, 5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 5.0, 5.0]
