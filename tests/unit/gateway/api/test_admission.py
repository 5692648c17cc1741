"""Ingest requests admitted by their own append (issue 17 item 1; docs/api.md API-13-D3, API-140-D1).

Against real PostgreSQL and Redis. A key this process verified lately is checked by the append script: one
Redis round trip per request. What must not change: a revoked key is refused at once (API-13), an address over
its failed-authentication limit gets 429 before any key is honoured (API-141), the per-key limit holds with its
headers (API-140), a stale or evicted cache entry sends the key to the database again, and an answer that appends
nothing (a 400) is never given to a key that would be refused. A refused request leaves nothing in the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
import sqlalchemy as sa
from flask import Flask

from core import keycache
from core.accounts import key_digest
from core.queue import stream_key
from core.storage import models as m
from core.tenant import Tenant
from gateway import create_app
from tests.conftest import AccountKeys, make_settings, new_account
from tests.integration.helpers import post

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def _app(database_url: str, redis_url: str, **overrides: Any) -> Flask:
    return create_app(make_settings(database_url, redis_url=redis_url, **overrides))


def _logged(app: Flask, keys: AccountKeys) -> int:
    """Entries in the tenant's log: what the edge appended (no drain runs in these tests)."""
    return int(app.config["MBUZZ"].redis.xlen(stream_key(Tenant(keys.account_id, "test"))))


def _event(visitor: str = "v-admit") -> dict[str, Any]:
    return {"event_type": "page_view", "visitor_id": visitor}


@pytest.fixture()
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the commands (or pipelines, or scripts) sent to Redis: one send is one round trip."""
    sent = [0]
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    yield sent


def test_issue17_a_known_key_is_admitted_and_appended_in_one_round_trip(
        database_url: str, redis_url: str, round_trips: list[int]) -> None:
    app = _app(database_url, redis_url)
    keys = new_account(app)
    client = app.test_client()
    assert post(client, keys, "/events", _event()).status_code == 202  # verified the slow way, remembered
    round_trips[0] = 0
    resp = post(client, keys, "/events", _event())
    assert resp.status_code == 202 and resp.get_json()["accepted"] == 1
    assert round_trips[0] == 1
    assert resp.headers["X-RateLimit-Limit"] == "5000" and int(resp.headers["X-RateLimit-Remaining"]) >= 4990
    assert _logged(app, keys) == 2


def test_API13_a_revoked_key_is_refused_at_once_on_the_fast_path(database_url: str, redis_url: str) -> None:
    app = _app(database_url, redis_url)
    keys = new_account(app)
    client = app.test_client()
    assert post(client, keys, "/events", _event()).status_code == 202
    with app.config["MBUZZ"].sessions() as db:
        key_id = db.scalar(sa.select(m.ApiKey.id).where(m.ApiKey.key_digest == key_digest(keys.test_key)))
    store = app.config["MBUZZ"].redis
    entry = keycache.entry_key(key_digest(keys.test_key))
    cached = store.get(entry)
    result = app.test_cli_runner().invoke(args=["mbuzz", "revoke-api-key", str(key_id)])
    assert result.exit_code == 0, result.output
    store.set(entry, cached)  # a lookup that raced the revocation wrote its entry back: the mark still wins
    for body in (_event(), b"{not json"):  # also an answer that would append nothing: 401, not 400
        resp = post(client, keys, "/events", body)
        assert (resp.status_code, resp.get_json()) == (401, {"error": "API key has been revoked"})
    assert _logged(app, keys) == 1


def test_API140_the_per_key_limit_holds_on_the_fast_path(database_url: str, redis_url: str) -> None:
    app = _app(database_url, redis_url, ratelimit_ingest="2 per minute")
    keys = new_account(app)
    client = app.test_client()
    assert [post(client, keys, "/events", _event()).status_code for _ in range(2)] == [202, 202]
    for path, body in (("/events", _event()), ("/sessions", {"visitor_id": "v", "session_id": "s"}),
                       ("/events", b"[]")):
        resp = post(client, keys, path, body)
        assert resp.status_code == 429, (path, resp.get_json())
        assert resp.get_json() == {"error": "Rate limit exceeded", "retry_after": int(resp.headers["Retry-After"])}
        assert 1 <= int(resp.headers["Retry-After"]) <= 30  # one request more each half minute
        assert resp.headers["X-RateLimit-Remaining"] == "0" and resp.headers["X-RateLimit-Limit"] == "2"
    assert _logged(app, keys) == 2


def test_API141_an_address_over_its_failure_limit_gets_429_even_with_a_known_key(
        database_url: str, redis_url: str) -> None:
    app = _app(database_url, redis_url, ratelimit_auth_failures="2 per minute")
    keys = new_account(app)
    client, other = app.test_client(), app.test_client()
    client.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    other.environ_base["REMOTE_ADDR"] = "198.51.100.8"
    assert post(client, keys, "/events", _event()).status_code == 202
    bad = {"Authorization": "Bearer sk_test_" + "0" * 32}
    assert [client.post("/api/v1/events", json=_event(), headers=bad).status_code for _ in range(2)] == [401, 401]
    resp = post(client, keys, "/events", _event())
    assert resp.status_code == 429 and resp.get_json()["retry_after"] == int(resp.headers["Retry-After"]) >= 1
    assert (resp.headers["X-RateLimit-Limit"], resp.headers["X-RateLimit-Remaining"]) == ("2", "0")
    assert post(other, keys, "/events", _event()).status_code == 202
    assert _logged(app, keys) == 2


def test_API13_D3_an_evicted_or_stale_cache_entry_sends_the_key_to_the_database(
        database_url: str, redis_url: str) -> None:
    app = _app(database_url, redis_url)
    keys = new_account(app)
    client = app.test_client()
    assert post(client, keys, "/events", _event()).status_code == 202
    store = app.config["MBUZZ"].redis
    entry = keycache.entry_key(hashlib.sha256(keys.test_key.encode()).hexdigest())
    store.delete(entry)  # evicted
    assert post(client, keys, "/events", _event()).status_code == 202
    assert store.exists(entry)  # looked up in the database and cached again
    stale = {**orjson.loads(store.get(entry)), "checked_at": 0.0}
    store.set(entry, orjson.dumps(stale))  # older than the cache's freshness: the database decides again
    assert post(client, keys, "/events", _event()).status_code == 202
    assert orjson.loads(store.get(entry))["checked_at"] > 0
    assert _logged(app, keys) == 3


def test_API140_without_redis_each_process_counts_in_memory(database_url: str) -> None:
    app = create_app(make_settings(database_url, ratelimit_ingest="2 per minute"))  # inline mode
    keys = new_account(app)
    client = app.test_client()
    statuses = [post(client, keys, "/events", _event()).status_code for _ in range(3)]
    assert statuses == [202, 202, 429]


def test_API140_conversions_and_identify_share_the_sync_limit_apart_from_ingest(
        database_url: str, redis_url: str) -> None:
    app = _app(database_url, redis_url, ratelimit_sync="2 per minute", sync_wait_ms=0)  # no drain: answered pending
    keys = new_account(app)
    client = app.test_client()
    conversion = {"conversion_type": "purchase", "visitor_id": "v-sync", "revenue": 10}
    identify = {"user_id": "u-sync", "visitor_id": "v-sync"}
    assert post(client, keys, "/conversions", conversion).status_code == 202
    assert post(client, keys, "/identify", identify).status_code == 202
    for path, body in (("/conversions", conversion), ("/identify", identify)):
        resp = post(client, keys, path, body)
        assert resp.status_code == 429, (path, resp.get_json())
        assert resp.get_json()["retry_after"] == int(resp.headers["Retry-After"]) >= 1
        assert (resp.headers["X-RateLimit-Limit"], resp.headers["X-RateLimit-Remaining"]) == ("2", "0")
    assert _logged(app, keys) == 2
    assert post(client, keys, "/events", _event()).status_code == 202  # the ingest scope counts apart


def test_API140_the_sync_limit_without_redis(database_url: str) -> None:
    app = create_app(make_settings(database_url, ratelimit_sync="1 per minute"))  # inline mode
    keys = new_account(app)
    client = app.test_client()
    conversion = {"conversion_type": "purchase", "visitor_id": "v-sync-inline", "revenue": 10}
    assert [post(client, keys, "/conversions", conversion).status_code for _ in range(2)] == [201, 429]
