"""Nothing lost, nothing doubled: real gunicorn, RQ workers, PostgreSQL and Redis, killed and cut by the tests.

quality.md Q-20, Q-21, Q-22, Q-23, Q-27. Every test compares what the database holds with exactly what the
clients were told was accepted.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import requests
import sqlalchemy as sa
from flask import Flask

from core.jobs import QUEUE
from core.queue import dead_key, waiting_key
from core.reads import conversion_by_id
from core.storage import models as m
from core.tenant import Tenant
from tests.conftest import AccountKeys, new_account
from tests.integration.processes import (
    Proxy,
    env_for,
    gunicorn,
    kill_group,
    queued_redis_url,
    start_worker,
    stop,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability"
# How long a test waits for work it expects to happen: generous, because these tests check what happens, not how
# fast a loaded 2-core machine gets there (a wait returns as soon as its condition holds).
PATIENCE = 120.0


@pytest.fixture(scope="module")
def redis_url(worker_id: str, is_postgres: bool) -> str:
    return queued_redis_url(worker_id, is_postgres)


@pytest.fixture()
def logs(request: pytest.FixtureRequest) -> Path:
    folder = ARTIFACTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Client:
    """Sends events and remembers exactly which ids the server said it accepted."""

    def __init__(self, base: str, keys: AccountKeys) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {keys.test_key}", "Content-Type": "application/json"}
        self.accepted: set[str] = set()
        self.statuses: dict[int, int] = {}
        self.failures = 0
        self.modes: set[str] = set()
        self._lock = threading.Lock()

    def send_batch(self, visitor: str, n: int, key: str | None = None) -> None:
        events = [{"event_type": "step", "visitor_id": visitor, "message_id": f"{key}-{i}" if key else None,
                   "properties": {"url": f"https://shop.example/p/{i}", "i": i}} for i in range(n)]
        try:
            resp = requests.post(self.base + "/api/v1/events", json={"events": events}, headers=self.headers,
                                 timeout=30)
        except requests.RequestException:
            with self._lock:
                self.failures += 1  # never answered: the client was told nothing
            return
        with self._lock:
            self.statuses[resp.status_code] = self.statuses.get(resp.status_code, 0) + 1
            if resp.status_code == 202:
                self.modes.add(resp.headers.get("X-Mbuzz-Processing", ""))
                self.accepted.update(e["id"] for e in resp.json()["events"] if not e["duplicate"])

    def load(self, seconds: float, threads: int = 4, batch: int = 20) -> None:
        deadline = time.monotonic() + seconds

        def loop(t: int) -> None:
            i = 0
            while time.monotonic() < deadline:
                self.send_batch(f"v-{t}-{i % 25}", batch)
                i += 1

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(loop, range(threads)))


def stored_event_ids(app: Flask, account_id: str) -> list[str]:
    with app.config["MBUZZ"].sessions() as db:
        return list(db.scalars(sa.select(m.Event.id).where(m.Event.account_id == account_id)))


def wait_drained(app: Flask, account_id: str, expected: set[str], timeout: float = 2 * PATIENCE) -> list[str]:
    ids: list[str] = []

    def done() -> bool:
        nonlocal ids
        ids = stored_event_ids(app, account_id)
        return len(ids) >= len(expected)

    wait_until(done, timeout, 0.5)
    time.sleep(1.0)  # anything processed twice would show up now
    return stored_event_ids(app, account_id)


def assert_exactly_once(app: Flask, keys: AccountKeys, client: Client, redis_url: str) -> None:
    ids = wait_drained(app, keys.account_id, client.accepted)
    assert len(ids) == len(set(ids))
    assert set(ids) == client.accepted, (len(ids), len(client.accepted))
    dead = redis.Redis.from_url(redis_url).xlen(dead_key(Tenant(keys.account_id, "test")))
    assert dead == 0


@pytest.fixture()
def stack(app: Flask, database_url: str, redis_url: str, logs: Path) -> Iterator[dict[str, Any]]:
    env = env_for(database_url, redis_url)
    keys = new_account(app)
    with gunicorn(env, log=logs / "gunicorn.log") as (base, proc):
        yield {"env": env, "keys": keys, "base": base, "gunicorn": proc, "logs": logs}


def scheduler_pid(log: Path, offset: int = 0) -> int | None:
    """The pid of the scheduler a worker forked, once its log (from ``offset``) says it holds a scheduler lock
    and started it."""
    text = log.read_bytes()[offset:].decode(errors="replace")
    found = re.findall(r"Scheduler for .* started with PID (\d+)", text)
    return int(found[-1]) if found and "Acquired scheduler lock for" in text else None


def idle_sessions_holding_advisory_locks(app: Flask) -> list[tuple[int, str]]:
    """Sessions of this test database idle in a transaction while holding an advisory lock."""
    with app.config["MBUZZ"].sessions() as db:
        return [(int(pid), str(state)) for pid, state in db.execute(sa.text(
            "SELECT DISTINCT a.pid, a.state FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND a.datname = current_database() "
            "AND a.state LIKE 'idle in transaction%'"))]


def test_Q20_worker_killed_mid_batch(app: Flask, stack: dict[str, Any], redis_url: str) -> None:
    """The drill of issue 15 item 1: the worker that owns the RQ scheduler is SIGKILLed mid-drain while its forked
    scheduler lives on; a new worker drains every accepted command exactly once and no session is left idle in a
    transaction holding visitors' advisory locks. The killed worker's sessions get a 10-minute idle timeout, so
    only their sockets closing with the worker can free the locks in time (Q-20-D1)."""
    keys, logs = stack["keys"], stack["logs"]
    client = Client(stack["base"], keys)
    client.load(3, threads=4, batch=50)  # build a backlog first, with no worker running
    assert client.accepted and client.modes == {"queued"}
    log = logs / "worker-1.log"
    offset = log.stat().st_size if log.exists() else 0  # earlier runs' lines stay in the file
    # A scheduler killed by an earlier test keeps its queues' locks until they expire (61 s): clear them, so that
    # this test's first worker is the one that forks the scheduler.
    r = redis.Redis.from_url(redis_url)
    for key in r.scan_iter(f"rq:scheduler-lock:{QUEUE}*"):
        r.delete(key)
    worker = start_worker(stack["env"] | {"MBUZZ_DRAIN_BATCH": "200",
                                          "MBUZZ_PG_IDLE_IN_TRANSACTION_TIMEOUT_MS": "600000"}, log)
    replacement = None
    try:
        assert wait_until(lambda: scheduler_pid(log, offset) is not None, PATIENCE), \
            "the first worker did not acquire the scheduler lock"
        child = scheduler_pid(log, offset)
        assert child is not None
        wait_until(lambda: len(stored_event_ids(app, keys.account_id)) > 0, PATIENCE, 0.05)
        worker.send_signal(signal.SIGKILL)  # mid-drain: some batches committed, one in flight, none acknowledged
        worker.wait(10)
        os.kill(child, 0)  # its forked scheduler lives on (it must hold no connection of the worker's: Q-20)
        processed_before = len(stored_event_ids(app, keys.account_id))
        assert processed_before < len(client.accepted), "the worker finished before it was killed"
        replacement = start_worker(stack["env"], logs / "worker-2.log")
        assert_exactly_once(app, keys, client, redis_url)
        assert idle_sessions_holding_advisory_locks(app) == []
        os.kill(child, 0)  # all of that while the killed worker's scheduler was still alive
    finally:
        if replacement is not None:
            stop(replacement)
        kill_group(worker)


def test_Q21_redis_down_then_back(app: Flask, database_url: str, redis_url: str, logs: Path) -> None:
    port = urlsplit(redis_url).port or 6379
    proxy = Proxy(port)
    parts = urlsplit(redis_url)
    proxied = urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))
    keys = new_account(app)
    env = env_for(database_url, proxied)
    worker = start_worker(env_for(database_url, redis_url), logs / "worker.log")
    try:
        with gunicorn(env, log=logs / "gunicorn.log") as (base, _):
            client = Client(base, keys)
            client.load(1.5)
            proxy.cut()
            down = Client(base, keys)
            down.load(2)
            proxy.restore()
            time.sleep(1.5)  # the gateway retries Redis once a second
            back = Client(base, keys)
            back.load(1.5)
        assert down.statuses and set(down.statuses) == {202}, down.statuses
        assert "degraded" in down.modes
        assert back.modes == {"queued"} or back.modes == {"queued", "degraded"}
        assert "queued" in back.modes
        everything = Client(base, keys)
        everything.accepted = client.accepted | down.accepted | back.accepted
        assert_exactly_once(app, keys, everything, redis_url)
    finally:
        stop(worker)
        proxy.close()


def test_Q22_postgres_down_for_the_worker(app: Flask, database_url: str, redis_url: str, logs: Path) -> None:
    parts = urlsplit(database_url)
    proxy = Proxy(parts.port or 5432)
    worker_db = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    keys = new_account(app)
    worker = start_worker(env_for(worker_db, redis_url), logs / "worker.log")
    try:
        with gunicorn(env_for(database_url, redis_url), log=logs / "gunicorn.log") as (base, _):
            client = Client(base, keys)
            client.load(1)
            proxy.cut()
            client.load(4)  # the log keeps accepting while the worker cannot reach PostgreSQL
            assert set(client.statuses) == {202}
            proxy.restore()
        assert_exactly_once(app, keys, client, redis_url)
        assert "database unavailable" in (logs / "worker.log").read_text()
    finally:
        stop(worker)
        proxy.close()


def test_Q23_duplicate_sends_in_queued_mode(app: Flask, stack: dict[str, Any], redis_url: str) -> None:
    keys = stack["keys"]
    worker = start_worker(stack["env"], stack["logs"] / "worker.log")
    try:
        client = Client(stack["base"], keys)
        key = uuid.uuid4().hex
        for _ in range(3):
            client.send_batch("dup-visitor", 5, key=key)
        assert len(client.accepted) == 5
        headers = client.headers
        body = {"conversion_type": "purchase", "visitor_id": "dup-visitor", "idempotency_key": key}
        first = requests.post(stack["base"] + "/api/v1/conversions", json=body, headers=headers, timeout=10)
        again = requests.post(stack["base"] + "/api/v1/conversions", json=body, headers=headers, timeout=10)
        assert first.status_code in (201, 202) and again.status_code == 200
        assert again.json()["id"] == first.json()["id"] and again.json()["duplicate"] is True
        assert_exactly_once(app, keys, client, redis_url)
        with app.config["MBUZZ"].sessions() as db:
            count = db.scalar(sa.select(sa.func.count()).select_from(m.Conversion)
                              .where(m.Conversion.account_id == keys.account_id))
        assert count == 1
    finally:
        stop(worker)


def test_API62_read_your_writes_for_event_based_conversion(app: Flask, stack: dict[str, Any]) -> None:
    worker = start_worker(stack["env"], stack["logs"] / "worker.log")
    try:
        headers = {"Authorization": f"Bearer {stack['keys'].test_key}"}
        base = stack["base"]
        requests.post(base + "/api/v1/sessions", json={"visitor_id": "ryw", "session_id": "s",
                      "url": "https://shop.example/?utm_source=newsletter&utm_medium=email"}, headers=headers)
        event = requests.post(base + "/api/v1/events", json={"event_type": "checkout", "visitor_id": "ryw"},
                              headers=headers).json()["events"][0]["id"]
        resp = requests.post(base + "/api/v1/conversions", json={"conversion_type": "purchase", "event_id": event,
                                                                 "revenue": "20"}, headers=headers, timeout=10)
        assert resp.status_code == 201, resp.text
        assert resp.headers["X-Mbuzz-Processing"] == "queued"
        body = resp.json()
        assert body["attribution"]["status"] == "complete"
        assert body["attribution"]["models"]["last_touch"][0]["channel"] == "email"
        ident = requests.post(base + "/api/v1/identify", json={"user_id": "ryw-user", "visitor_id": "ryw"},
                              headers=headers, timeout=10)
        assert ident.status_code == 200 and ident.json()["reattribution"] == {"conversions": 1}
        # ATT-54: the reattribution is a batch written with the link and run by the worker's chunk jobs.
        def batches() -> list[tuple[str, str, int]]:
            with app.config["MBUZZ"].sessions() as db:
                return [(b.trigger, b.status, b.processed) for b in db.scalars(sa.select(m.ReattributionBatch)
                        .where(m.ReattributionBatch.account_id == stack["keys"].account_id))]

        assert wait_until(lambda: batches() == [("identify", "completed", 1)], PATIENCE), batches()
        with app.config["MBUZZ"].sessions() as db:  # ATT-41: the anonymous conversion is now the user's
            conversion = db.get(m.Conversion, (stack["keys"].account_id, resp.json()["id"]))
            assert conversion is not None and conversion.user_id is not None
    finally:
        stop(worker)


def test_API62_pending_answer_when_no_worker_runs(
    app: Flask, stack: dict[str, Any], database_url: str, redis_url: str, logs: Path
) -> None:
    env = env_for(database_url, redis_url, MBUZZ_SYNC_WAIT_MS="300")
    keys = stack["keys"]
    headers = {"Authorization": f"Bearer {keys.test_key}"}
    with gunicorn(env, log=logs / "gunicorn-short-wait.log") as (base, _):
        resp = requests.post(base + "/api/v1/conversions", json={"conversion_type": "trial", "visitor_id": "p"},
                             headers=headers, timeout=10)
        ident = requests.post(base + "/api/v1/identify", json={"user_id": "p-user", "visitor_id": "p"},
                              headers=headers, timeout=10)
    assert resp.status_code == 202
    assert resp.json()["attribution"] == {"status": "pending", "lookback_days": 30, "sessions_analyzed": None,
                                          "models": {}}
    assert ident.status_code == 202 and ident.json()["status"] == "pending"
    tenant = Tenant(keys.account_id, "test")

    def attributed() -> bool:
        with app.config["MBUZZ"].sessions() as db:  # the data API is a later issue: read the stored state
            found = conversion_by_id(db, tenant, resp.json()["id"])
        return found is not None and found["attribution"]["status"] == "complete"

    worker = start_worker(stack["env"], logs / "worker.log")
    try:  # the work completes anyway (API-62)
        assert wait_until(attributed, PATIENCE)
    finally:
        stop(worker)


def test_Q27_gateway_sigterm_under_load(app: Flask, database_url: str, redis_url: str, logs: Path) -> None:
    keys = new_account(app)
    env = env_for(database_url, redis_url)
    worker = start_worker(env, logs / "worker.log")
    try:
        with gunicorn(env, log=logs / "gunicorn.log") as (base, proc):
            client = Client(base, keys)
            loader = threading.Thread(target=client.load, args=(4,), kwargs={"threads": 6})
            loader.start()
            time.sleep(1.5)
            proc.send_signal(signal.SIGTERM)  # graceful: in-flight requests finish, then the workers exit
            loader.join()
            proc.wait(30)
        assert client.accepted
        assert 500 not in client.statuses and 503 not in client.statuses
        assert_exactly_once(app, keys, client, redis_url)
    finally:
        stop(worker)


def test_Q26_overload_answers_429_with_retry_after_and_keeps_every_2xx(
    app: Flask, database_url: str, redis_url: str, logs: Path
) -> None:
    keys = new_account(app)
    env = env_for(database_url, redis_url, MBUZZ_RATELIMIT_INGEST="40 per second")
    worker = start_worker(env, logs / "worker.log")
    retry_after: list[str] = []
    try:
        with gunicorn(env, log=logs / "gunicorn.log") as (base, _):
            client = Client(base, keys)
            client.load(4, threads=12, batch=2)
            while True:  # the limit is per second: push until it bites once more, keeping what was accepted
                resp = requests.post(base + "/api/v1/events", json={"event_type": "x", "visitor_id": "o"},
                                     headers=client.headers, timeout=10)
                if resp.status_code != 202:
                    break
                client.accepted.update(e["id"] for e in resp.json()["events"])
            assert resp.status_code == 429
            retry_after.append(resp.headers["Retry-After"])
        assert set(client.statuses) <= {202, 429}, client.statuses
        assert client.statuses.get(429) and client.statuses.get(202)
        assert int(retry_after[0]) >= 1
        assert_exactly_once(app, keys, client, redis_url)
    finally:
        stop(worker)


def test_dead_letters_are_visible_and_replayable(app: Flask, database_url: str, redis_url: str, logs: Path) -> None:
    """A command that cannot be processed goes to the dead-letter stream with its error, never dropped."""
    keys = new_account(app)
    tenant = Tenant(keys.account_id, "test")
    client = redis.Redis.from_url(redis_url)
    from core.queue import PARTITIONS, stream_key

    poison = client.xadd(stream_key(tenant), {"c": b'{"kind": "event", "not": "a command"}'})
    client.sadd(PARTITIONS, f"{tenant.account_id}:{tenant.environment}")
    env = env_for(database_url, redis_url)
    worker = start_worker(env, logs / "worker.log")
    try:
        assert wait_until(lambda: client.xlen(dead_key(tenant)) == 1, PATIENCE)
    finally:
        stop(worker)
    # Q-20-D4: the dead letter keeps the command and where it came from; the log entry is gone.
    (_, fields), = client.xrange(dead_key(tenant))
    assert fields[b"c"] == b'{"kind": "event", "not": "a command"}' and fields[b"log_id"] == poison
    assert client.xlen(stream_key(tenant)) == 0
    cli_env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    from gateway import create_app
    from tests.conftest import make_settings

    runner_app = create_app(make_settings(database_url, redis_url=redis_url))
    listed = runner_app.test_cli_runner().invoke(args=["mbuzz", "dead-letters", "list"], env=cli_env)
    assert listed.exit_code == 0, listed.output
    line = next(x for x in listed.output.splitlines() if x.startswith(f"{tenant.account_id}:test/"))
    assert "TypeError" in line or "Error" in line
    entry = line.split()[0]
    replayed = runner_app.test_cli_runner().invoke(args=["mbuzz", "dead-letters", "replay", entry], env=cli_env)
    assert replayed.exit_code == 0 and "replayed 1 of 1" in replayed.output
    assert client.xlen(dead_key(tenant)) == 0 and client.xlen(stream_key(tenant)) == 1


def test_API93_conversion_waits_for_an_event_still_in_flight(
    app: Flask, stack: dict[str, Any], redis_url: str
) -> None:
    """API-93 in queued mode: a fresh unknown event id is waited for, an expired one rejected, none lost."""
    from datetime import UTC, datetime, timedelta

    from core.commands import EventCommand
    from core.ids import new_id
    from core.queue import RedisStreamLog

    env = {**stack["env"], "MBUZZ_EVENT_WAIT_RETRY_S": "1", "MBUZZ_SWEEP_INTERVAL_S": "1"}
    keys = stack["keys"]
    tenant = Tenant(keys.account_id, "test")
    headers = {"Authorization": f"Bearer {keys.test_key}"}
    url = stack["base"] + "/api/v1/conversions"
    worker = start_worker(env, stack["logs"] / "worker.log")
    try:
        # An event accepted elsewhere (its id already handed out) whose command has not reached this log yet.
        in_flight = new_id("evt")
        waiting = requests.post(url, json={"conversion_type": "purchase", "event_id": in_flight, "revenue": "5"},
                                headers=headers, timeout=10)
        assert waiting.status_code == 202, waiting.text
        assert waiting.json()["attribution"]["status"] == "pending"
        # An id 1 h − 3 s old whose event never comes, and one already 2 h old.
        expiring = new_id("evt", datetime.now(UTC) - timedelta(hours=1) + timedelta(seconds=3))
        lost = requests.post(url, json={"conversion_type": "purchase", "event_id": expiring},
                             headers=headers, timeout=10)
        assert lost.status_code == 202, lost.text
        old = new_id("evt", datetime.now(UTC) - timedelta(hours=2))
        refused = requests.post(url, json={"conversion_type": "purchase", "event_id": old}, headers=headers,
                                timeout=10)
        assert refused.status_code == 422 and refused.json()["errors"] == [f"event_id {old} not found"]

        time.sleep(2)  # the waiter has been retried at least once without its event
        now = datetime.now(UTC)
        RedisStreamLog(redis.Redis.from_url(redis_url), lambda _t: None).append(tenant, [EventCommand(
            id=in_flight, event_type="checkout", occurred_at=now, received_at=now, visitor_key="in-flight",
            url="https://shop.example/?utm_source=newsletter&utm_medium=email")])

        def stored(conversion_id: str) -> dict[str, Any] | None:
            with app.config["MBUZZ"].sessions() as db:
                return conversion_by_id(db, tenant, conversion_id)

        assert wait_until(lambda: stored(waiting.json()["id"]) is not None, PATIENCE)
        body = stored(waiting.json()["id"])
        assert body is not None and body["attribution"]["status"] == "complete"
        assert body["visitor_id"] == "in-flight"
        assert body["attribution"]["models"]["last_touch"][0]["channel"] == "email"

        def rejected(name: str) -> bool:
            with app.config["MBUZZ"].sessions() as db:
                return db.scalar(sa.select(sa.func.count()).select_from(m.Rejection).where(
                    m.Rejection.account_id == keys.account_id, m.Rejection.name == name)) == 1

        assert wait_until(lambda: rejected(lost.json()["id"]), PATIENCE)
        assert stored(lost.json()["id"]) is None
        with app.config["MBUZZ"].sessions() as db:  # each rejected conversion is recorded once (API-24)
            assert db.scalar(sa.select(sa.func.count()).select_from(m.Rejection).where(
                m.Rejection.account_id == keys.account_id)) == 2
    finally:
        stop(worker)
    with app.config["MBUZZ"].sessions() as db:
        conversions = db.scalars(sa.select(m.Conversion.id).where(m.Conversion.account_id == keys.account_id)).all()
    assert conversions == [waiting.json()["id"]]  # processed exactly once, the expired one never
    assert redis.Redis.from_url(redis_url).zcard(waiting_key(Tenant(keys.account_id, "test"))) == 0


def test_ATT31_queued_conversion_runs_the_fit_job_on_the_worker(app: Flask, stack: dict[str, Any]) -> None:
    """Queued mode: the drain enqueues one fit job (queue ``<prefix>-fits``) that a worker runs."""
    keys = stack["keys"]
    headers = {"Authorization": f"Bearer {keys.test_key}"}
    base = stack["base"] + "/api/v1"

    def fits() -> list[tuple[str, str]]:
        with app.config["MBUZZ"].sessions() as db:
            return sorted(db.execute(sa.select(m.AttributionFit.model, m.AttributionFit.status)
                                     .where(m.AttributionFit.account_id == keys.account_id)).all())

    worker = start_worker(stack["env"], stack["logs"] / "worker.log")
    try:
        touch = requests.post(base + "/sessions", json={"visitor_id": "f", "session_id": "f1",
                                                        "url": "https://shop.example/?gclid=x"}, headers=headers,
                              timeout=10)
        assert touch.status_code == 202, touch.text
        first = requests.post(base + "/conversions", json={"conversion_type": "purchase", "visitor_id": "f"},
                              headers=headers, timeout=10)
        assert first.status_code == 201, first.text
        assert first.json()["attribution"]["fallbacks"]["markov_chain"] == "linear", first.text
        assert wait_until(lambda: len(fits()) == 2, PATIENCE)
        assert fits() == [("markov_chain", "insufficient_data"), ("shapley_value", "insufficient_data")]
        again = requests.post(base + "/conversions", json={"conversion_type": "purchase", "visitor_id": "f"},
                              headers=headers, timeout=10)
        assert again.status_code == 201
        time.sleep(2)
        assert len(fits()) == 2  # the stored fit is current: no second job
    finally:
        stop(worker)


def test_ATT54_settings_change_batch_runs_on_the_worker(app: Flask, stack: dict[str, Any], redis_url: str) -> None:
    """Queued mode: the batch's chunks are RQ jobs (queue ``<prefix>-attribution``) run by the worker."""
    from core.reattribution.service import apply_settings_change
    from core.reattribution.tasks import start_batch

    keys = stack["keys"]
    headers = {"Authorization": f"Bearer {keys.test_key}"}
    base = stack["base"] + "/api/v1"
    worker = start_worker(stack["env"], stack["logs"] / "worker.log")
    try:
        for visitor in ("r1", "r2"):
            requests.post(base + "/sessions", json={"visitor_id": visitor, "session_id": visitor,
                                                    "url": "https://shop.example/?utm_source=x&utm_medium=email"},
                          headers=headers, timeout=10)
            done = requests.post(base + "/conversions", json={"conversion_type": "purchase", "visitor_id": visitor},
                                 headers=headers, timeout=10)
            assert done.status_code == 201, done.text
        sessions = app.config["MBUZZ"].sessions
        with sessions.begin() as db:
            batches = [(b.environment, b.id) for b in apply_settings_change(db, keys.account_id,
                                                                            {"time_decay_half_life_days": 2})]
        client = redis.Redis.from_url(redis_url)
        for environment, batch_id in batches:
            start_batch(sessions, client, Tenant(keys.account_id, environment), batch_id)

        def finished() -> list[tuple[str, int, int | None]]:
            with sessions() as db:
                return sorted((b.status, b.processed, b.total) for b in db.scalars(
                    sa.select(m.ReattributionBatch).where(m.ReattributionBatch.account_id == keys.account_id)))

        assert wait_until(lambda: all(s == "completed" for s, _, _ in finished()), PATIENCE), finished()
        assert finished() == [("completed", 0, 0), ("completed", 2, 2)]
        with sessions() as db:
            versions = set(db.scalars(sa.select(m.AttributionCredit.model_config_version).where(
                m.AttributionCredit.account_id == keys.account_id, m.AttributionCredit.model == "time_decay")))
        assert versions == {2}
    finally:
        stop(worker)


def test_ATT45_attribution_retry_is_scheduled_and_run_by_the_worker(
    app: Flask, stack: dict[str, Any], redis_url: str
) -> None:
    """Queued mode: a pending conversion gets attempts 10 s, 60 s and 300 s later (RQ scheduler in the worker)."""
    from rq import Queue
    from rq.registry import ScheduledJobRegistry

    from core.reattribution.tasks import ATTRIBUTION_QUEUE, enqueue_attribution_retries

    keys = stack["keys"]
    headers = {"Authorization": f"Bearer {keys.test_key}"}
    base = stack["base"] + "/api/v1"
    worker = start_worker(stack["env"], stack["logs"] / "worker.log")
    try:
        requests.post(base + "/sessions", json={"visitor_id": "z", "session_id": "z1",
                                                "url": "https://shop.example/?utm_source=x&utm_medium=email"},
                      headers=headers, timeout=10)
        done = requests.post(base + "/conversions", json={"conversion_type": "purchase", "visitor_id": "z"},
                             headers=headers, timeout=10)
        assert done.status_code == 201, done.text
        conversion_id = done.json()["id"]
        sessions = app.config["MBUZZ"].sessions
        with sessions.begin() as db:  # the state a failed attribution leaves (ATT-45)
            db.execute(sa.delete(m.AttributionCredit).where(m.AttributionCredit.conversion_id == conversion_id))
            db.execute(sa.update(m.Conversion).where(m.Conversion.id == conversion_id)
                       .values(attribution_status="pending"))
        client = redis.Redis.from_url(redis_url)
        began = time.time()
        enqueue_attribution_retries(client, Tenant(keys.account_id, "test"), [conversion_id])
        registry = ScheduledJobRegistry(queue=Queue(ATTRIBUTION_QUEUE, connection=client))
        (job_id,) = registry.get_job_ids()
        assert 9 <= registry.get_scheduled_time(job_id).timestamp() - began <= 11

        def complete() -> bool:
            with sessions() as db:
                conv = db.get(m.Conversion, (keys.account_id, conversion_id))
                return conv is not None and conv.attribution_status == "complete"

        assert not complete()
        assert wait_until(complete, PATIENCE)
        assert time.time() - began >= 9  # not before its time
        with sessions() as db:
            assert db.scalar(sa.select(sa.func.count()).select_from(m.AttributionCredit).where(
                m.AttributionCredit.conversion_id == conversion_id)) == 8  # one row per model
    finally:
        stop(worker)


def test_ATT54_a_batch_whose_start_was_lost_is_recovered(app: Flask, stack: dict[str, Any]) -> None:
    """A crash between the trigger's commit and the enqueue leaves a pending batch: the sweeper starts it."""
    from core.reattribution.service import apply_settings_change

    keys = stack["keys"]
    headers = {"Authorization": f"Bearer {keys.test_key}"}
    base = stack["base"] + "/api/v1"
    requests.post(base + "/sessions", json={"visitor_id": "lost", "session_id": "l1",
                                            "url": "https://shop.example/?utm_source=x&utm_medium=email"},
                  headers=headers, timeout=10)
    worker = start_worker({**stack["env"], "MBUZZ_BATCH_RECOVERY_S": "1", "MBUZZ_SWEEP_INTERVAL_S": "1"},
                          stack["logs"] / "worker.log")
    try:
        done = requests.post(base + "/conversions", json={"conversion_type": "purchase", "visitor_id": "lost"},
                             headers=headers, timeout=10)
        assert done.status_code == 201, done.text
        sessions = app.config["MBUZZ"].sessions
        with sessions.begin() as db:  # committed, and then never enqueued
            apply_settings_change(db, keys.account_id, {"u_shaped_first_share": "0.30"})

        def statuses() -> list[tuple[str, int]]:
            with sessions() as db:
                return sorted((b.status, b.processed) for b in db.scalars(
                    sa.select(m.ReattributionBatch).where(m.ReattributionBatch.account_id == keys.account_id)))

        assert wait_until(lambda: statuses() == [("completed", 0), ("completed", 1)], PATIENCE), statuses()
    finally:
        stop(worker)
