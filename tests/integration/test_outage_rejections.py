"""PostgreSQL down, Redis up: a request that appended something is answered 2xx, and its rejections are not lost.

api.md API-66 (2xx exactly when something was appended), API-24 (every rejection recorded, once), API-51 (a
retry doubles nothing), quality.md Q-22. Real gunicorn and RQ worker; the gateway's and the worker's PostgreSQL
connections go through a proxy the test cuts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import requests
import sqlalchemy as sa
from flask import Flask

from core.ids import new_id
from core.log import Rejected, RejectionBuffer, rejection_rows, write_rejections
from core.queue import dead_key
from core.storage import models as m
from core.tenant import Tenant
from tests.conftest import new_account
from tests.integration.processes import Proxy, env_for, gunicorn, queued_redis_url, start_worker, stop, wait_until

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
def pg_proxy(database_url: str) -> Iterator[tuple[Proxy, str]]:
    parts = urlsplit(database_url)
    proxy = Proxy(parts.port or 5432)
    try:
        yield proxy, urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    finally:
        proxy.close()


def _count(app: Flask, model: Any, *where: Any) -> int:
    with app.config["MBUZZ"].sessions() as db:
        return int(db.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0)


@pytest.mark.postgres
@pytest.mark.redis
def test_API66_API24_batch_with_a_rejected_event_while_postgres_is_down(
    app: Flask, redis_url: str, pg_proxy: tuple[Proxy, str], logs: Path
) -> None:
    """Q-22 drill: valid + invalid events with PostgreSQL cut answer 202 naming the rejected one (was 503 after
    the valid ones were appended); the client's retry doubles nothing; once PostgreSQL is back and the worker has
    drained, the stored events are exactly the accepted ones and each rejection is recorded once."""
    proxy, proxied_db = pg_proxy
    keys = new_account(app)
    env = env_for(proxied_db, redis_url)
    headers = {"Authorization": f"Bearer {keys.test_key}"}
    run = uuid.uuid4().hex[:8]
    batch = {"events": [
        {"event_type": "page_view", "visitor_id": "v-out", "message_id": f"{run}-a"},
        {"event_type": "add_to_cart", "visitor_id": "v-out", "message_id": f"{run}-b"},
        {"event_type": "broken", "message_id": f"{run}-c"},  # no visitor_id or user_id
    ]}
    bad_conversion = {"visitor_id": "v-out", "idempotency_key": f"{run}-conv"}  # no conversion_type
    worker = start_worker(env, logs / "worker.log")
    try:
        with gunicorn(env, log=logs / "gunicorn.log") as (base, _):
            warm = requests.post(base + "/api/v1/events", json={"event_type": "warm", "visitor_id": "v-out"},
                                 headers=headers, timeout=30)  # the key is looked up and cached (API-13)
            assert warm.status_code == 202, warm.text
            accepted = {warm.json()["events"][0]["id"]}
            proxy.cut()
            first = requests.post(base + "/api/v1/events", json=batch, headers=headers, timeout=30)
            assert first.status_code == 202, first.text
            body = first.json()
            assert body["accepted"] == 2
            assert [(r["index"], r["event_type"]) for r in body["rejected"]] == [(2, "broken")]
            assert body["rejected"][0]["errors"] == ["visitor_id or user_id is required"]
            ids = [e["id"] for e in body["events"]]
            assert [e["duplicate"] for e in body["events"]] == [False, False]
            accepted.update(ids)
            retry = requests.post(base + "/api/v1/events", json=batch, headers=headers, timeout=30)
            assert retry.status_code == 202, retry.text
            assert [e["id"] for e in retry.json()["events"]] == ids
            assert [e["duplicate"] for e in retry.json()["events"]] == [True, True]
            assert [r["index"] for r in retry.json()["rejected"]] == [2]
            for _ in range(2):  # a 422 is answered as a 422 (it was a 503), and recorded (API-24)
                refused = requests.post(base + "/api/v1/conversions", json=bad_conversion, headers=headers,
                                        timeout=30)
                assert refused.status_code == 422, refused.text
                assert refused.json() == {"success": False, "errors": ["conversion_type is required"]}
            proxy.restore()

        def stored() -> set[str]:
            with app.config["MBUZZ"].sessions() as db:
                return set(db.scalars(sa.select(m.Event.id).where(m.Event.account_id == keys.account_id)))

        def rejections() -> int:
            return _count(app, m.Rejection, m.Rejection.account_id == keys.account_id)

        assert wait_until(lambda: stored() == accepted and rejections() >= 2, PATIENCE, 0.5), (stored(), accepted)
        time.sleep(1.0)  # anything recorded twice would show up now
        assert _count(app, m.Event, m.Event.account_id == keys.account_id) == len(accepted)
        assert stored() == accepted
        with app.config["MBUZZ"].sessions() as db:
            rows = db.scalars(sa.select(m.Rejection).where(m.Rejection.account_id == keys.account_id)).all()
            recorded = sorted((r.endpoint, r.item_index, r.name, tuple(r.errors), r.key_prefix) for r in rows)
        prefix = keys.test_key[:12]
        assert recorded == [
            ("conversions", None, None, ("conversion_type is required",), prefix),
            ("events", 2, "broken", ("visitor_id or user_id is required",), prefix),
        ]
        assert redis.Redis.from_url(redis_url).xlen(dead_key(Tenant(keys.account_id, "test"))) == 0
    finally:
        stop(worker)


@pytest.mark.postgres
@pytest.mark.redis
def test_API24_buffered_rejections_left_by_a_crashed_flush_are_recorded_once(app: Flask, redis_url: str) -> None:
    """A flush that committed its rows and died before removing them from Redis: the next flush inserts nothing
    again (fixed ids, ON CONFLICT DO NOTHING) and empties the buffer."""
    buffer = RejectionBuffer(redis.Redis.from_url(redis_url))
    keys = new_account(app)
    tenant = Tenant(keys.account_id, "test")
    now = datetime.now(UTC)
    rejected = [Rejected(id=new_id("rej"), endpoint="events", index=i, name="broken", errors=["event_type is required"],
                         key_prefix=keys.test_key[:12], request_id=f"req-{i}", created_at=now) for i in range(3)]
    buffer.push(tenant, rejected)
    with app.config["MBUZZ"].sessions.begin() as db:  # what the crashed flush had committed
        write_rejections(db, rejection_rows(tenant, rejected[:2]))
    while buffer.flush(app.config["MBUZZ"].sessions):
        pass
    with app.config["MBUZZ"].sessions() as db:
        rows = db.scalars(sa.select(m.Rejection).where(m.Rejection.account_id == keys.account_id)).all()
        assert sorted((r.id, r.item_index, r.request_id, r.created_at) for r in rows) == sorted(
            (r.id, r.index, r.request_id, now) for r in rejected)


def test_API24_inline_rejections_are_recorded_with_the_request_and_keyed_retries_once(app: Flask) -> None:
    """Inline mode (no Redis): the rejections are written in the transaction of the request's events. A rejected
    event with a key (message_id) that is sent again is recorded once; one without any key each time."""
    keys = new_account(app)
    client = app.test_client()
    run = uuid.uuid4().hex[:8]
    batch = {"events": [{"event_type": "ok", "visitor_id": "v-1", "message_id": f"{run}-ok"},
                        {"event_type": "keyed", "message_id": f"{run}-bad"},
                        {"event_type": "unkeyed"}]}
    for _ in range(2):
        resp = client.post("/api/v1/events", json=batch, headers=keys.headers())
        assert resp.status_code == 202, resp.get_json()
        assert [r["index"] for r in resp.get_json()["rejected"]] == [1, 2]
    with app.config["MBUZZ"].sessions() as db:
        rows = db.scalars(sa.select(m.Rejection).where(m.Rejection.account_id == keys.account_id)).all()
        names = sorted((r.endpoint, r.item_index, r.name, tuple(r.errors)) for r in rows)
    missing = ("visitor_id or user_id is required",)
    assert names == [("events", 1, "keyed", missing), ("events", 2, "unkeyed", missing),
                     ("events", 2, "unkeyed", missing)]
    assert _count(app, m.Event, m.Event.account_id == keys.account_id) == 1
