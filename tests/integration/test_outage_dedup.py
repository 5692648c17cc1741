"""Idempotency keys across degraded mode: a replay is answered with the id that is stored.

api.md API-51 (a replayed key answers the original id and ``duplicate: true``), API-52, API-65 (degraded mode),
quality.md Q-21, Q-23; docs/api.md API-51-D2. Real gunicorn and RQ worker; the gateway's Redis goes through a
proxy the test cuts, the worker's does not.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import requests
import sqlalchemy as sa
from flask import Flask

from core.queue import idempotency_key
from core.storage import models as m
from core.tenant import Tenant
from tests.conftest import AccountKeys, new_account
from tests.integration.processes import Proxy, env_for, gunicorn, queued_redis_url, start_worker, stop, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "outage"
PATIENCE = 120.0  # waits return as soon as their condition holds; speed is not under test


@pytest.fixture(scope="module")
def redis_url(worker_id: str, is_postgres: bool) -> str:
    return queued_redis_url(worker_id, is_postgres)


@pytest.fixture()
def logs(request: pytest.FixtureRequest) -> Path:
    folder = ARTIFACTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture()
def stack(app: Flask, database_url: str, redis_url: str, logs: Path) -> Iterator[dict[str, Any]]:
    """A gunicorn whose Redis can be cut, and an account."""
    parts = urlsplit(redis_url)
    proxy = Proxy(parts.port or 6379)
    proxied = urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))
    try:
        with gunicorn(env_for(database_url, proxied), log=logs / "gunicorn.log") as (base, _):
            yield {"base": base, "proxy": proxy, "keys": new_account(app),
                   "worker_env": env_for(database_url, redis_url)}
    finally:
        proxy.close()


def send(base: str, keys: AccountKeys, message_ids: list[str]) -> requests.Response:
    events = [{"event_type": "step", "visitor_id": "v-dedup", "message_id": mid} for mid in message_ids]
    return requests.post(base + "/api/v1/events", json={"events": events}, timeout=30,
                         headers={"Authorization": f"Bearer {keys.test_key}"})


def answered(resp: requests.Response) -> list[tuple[str, bool]]:
    assert resp.status_code == 202, resp.text
    return [(e["id"], e["duplicate"]) for e in resp.json()["events"]]


def replay_until_queued(base: str, keys: AccountKeys, batch: list[str], expected: list[str]) -> None:
    """Replay until a gateway process answers from the queued path: each process leaves Redis alone for a second
    after a failure (API-65-D1). Every answer on the way, degraded or queued, must name the originals."""

    def queued() -> bool:
        resp = send(base, keys, batch)
        assert answered(resp) == [(event_id, True) for event_id in expected]
        return resp.headers["X-Mbuzz-Processing"] == "queued"

    assert wait_until(queued, PATIENCE, 0.2)


def _reservation(keys: AccountKeys, message_id: str) -> str:
    return idempotency_key(Tenant(keys.account_id, "test"), "event", message_id)


def reserved(redis_url: str, keys: AccountKeys, message_ids: list[str]) -> bool:
    client = redis.Redis.from_url(redis_url)
    return all(client.exists(_reservation(keys, mid)) for mid in message_ids)


def stored_events(app: Flask, keys: AccountKeys) -> list[tuple[str, str | None]]:
    with app.config["MBUZZ"].sessions() as db:
        return [tuple(row) for row in db.execute(sa.select(m.Event.id, m.Event.idempotency_key)
                                                 .where(m.Event.account_id == keys.account_id))]


def wait_stored(app: Flask, keys: AccountKeys, count: int) -> list[tuple[str, str | None]]:
    wait_until(lambda: len(stored_events(app, keys)) >= count, PATIENCE, 0.5)
    time.sleep(1.0)  # anything stored twice would show up now
    return stored_events(app, keys)


def test_API51_replay_after_degraded_mode_answers_the_original_id(
    app: Flask, stack: dict[str, Any], redis_url: str
) -> None:
    """Events and a conversion accepted inline while Redis was cut, sent again once it is back: each answer has the
    original id and ``duplicate: true`` (they got new ids, never stored), and the database holds each once."""
    base, proxy, keys = stack["base"], stack["proxy"], stack["keys"]
    run = uuid.uuid4().hex[:8]
    batches = [[f"{run}-{b}-{i}" for i in range(3)] for b in range(4)]  # several requests: both gunicorn workers
    conversion = {"conversion_type": "purchase", "visitor_id": "v-dedup", "revenue": "12.50",
                  "idempotency_key": f"{run}-order"}
    headers = {"Authorization": f"Bearer {keys.test_key}"}
    proxy.cut()
    first: list[list[tuple[str, bool]]] = []
    for batch in batches:
        resp = send(base, keys, batch)
        assert resp.headers["X-Mbuzz-Processing"] == "degraded"
        first.append(answered(resp))
    assert all(not dup for answer in first for _, dup in answer)
    bought = requests.post(base + "/api/v1/conversions", json=conversion, headers=headers, timeout=30)
    assert bought.status_code == 201 and bought.headers["X-Mbuzz-Processing"] == "degraded", bought.text
    proxy.restore()
    # Each gateway process writes its degraded-mode claims back within about a second of Redis answering.
    wait_until(lambda: reserved(redis_url, keys, [mid for batch in batches for mid in batch]), 30, 0.1)
    for batch, original in zip(batches, first, strict=True):
        replay_until_queued(base, keys, batch, [event_id for event_id, _ in original])
    again = requests.post(base + "/api/v1/conversions", json=conversion, headers=headers, timeout=30)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == bought.json()["id"] and again.json()["duplicate"] is True
    worker = start_worker(stack["worker_env"])
    try:
        expected = {(event_id, mid) for batch, answer in zip(batches, first, strict=True)
                    for mid, (event_id, _) in zip(batch, answer, strict=True)}
        rows = wait_stored(app, keys, len(expected))
        assert sorted(rows) == sorted(expected)
    finally:
        stop(worker)
    with app.config["MBUZZ"].sessions() as db:
        conversions = db.scalars(sa.select(m.Conversion.id).where(m.Conversion.account_id == keys.account_id)).all()
    assert conversions == [bought.json()["id"]]


def test_API51_replay_in_degraded_mode_of_events_already_processed(
    app: Flask, stack: dict[str, Any], redis_url: str
) -> None:
    """The reverse order: queued and processed first, replayed while Redis is cut (inline), then again once Redis
    is back; every answer names the original, and the database holds each event once."""
    base, proxy, keys = stack["base"], stack["proxy"], stack["keys"]
    batch = [f"{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]
    worker = start_worker(stack["worker_env"])
    try:
        original = answered(send(base, keys, batch))
        assert all(not dup for _, dup in original)
        wait_stored(app, keys, len(batch))
        proxy.cut()
        inline = send(base, keys, batch)
        assert inline.headers["X-Mbuzz-Processing"] == "degraded"
        assert answered(inline) == [(event_id, True) for event_id, _ in original]
        proxy.restore()
        replay_until_queued(base, keys, batch, [event_id for event_id, _ in original])
        rows = wait_stored(app, keys, len(batch))
    finally:
        stop(worker)
    assert sorted(rows) == sorted((event_id, mid) for mid, (event_id, _) in zip(batch, original, strict=True))


def test_API51_replay_in_degraded_mode_of_events_still_in_the_log(
    app: Flask, stack: dict[str, Any], redis_url: str
) -> None:
    """Queued but not processed yet when Redis is cut: the inline replay cannot see the reservation (only Redis
    has it) and stores the event under a new id, which the database then holds (the queued copy is dropped as
    its duplicate, API-50). Once Redis is back, replays are answered with that stored id (API-51-D2), not with
    the reservation's id that was never stored; the database holds each event once."""
    base, proxy, keys = stack["base"], stack["proxy"], stack["keys"]
    batch = [f"{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]
    first = answered(send(base, keys, batch))  # no worker yet: the commands wait in the log
    proxy.cut()
    inline = send(base, keys, batch)
    assert inline.headers["X-Mbuzz-Processing"] == "degraded"
    kept = [event_id for event_id, _ in answered(inline)]
    proxy.restore()
    wait_until(lambda: all(redis.Redis.from_url(redis_url).get(_reservation(keys, mid))
                           == event_id.encode() for mid, event_id in zip(batch, kept, strict=True)), 30, 0.1)
    replay_until_queued(base, keys, batch, kept)
    worker = start_worker(stack["worker_env"])
    try:
        rows = wait_stored(app, keys, len(batch))
    finally:
        stop(worker)
    assert sorted(rows) == sorted(zip(kept, batch, strict=True))
    assert len(first) == len(batch)
