"""Real Redis: shared rate-limit storage and the deep health check (api.md API-111, API-140)."""

from __future__ import annotations

import os
import uuid

import pytest
import redis
import sqlalchemy as sa

from core.accounts import key_digest
from core.storage import models as m
from gateway import create_app
from tests.conftest import make_settings, new_account
from tests.integration.helpers import post

REDIS_URL = os.environ.get("MBUZZ_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            pytest.fail(f"CI: Redis is required at {REDIS_URL}")
        pytest.skip("Redis not reachable")
    return REDIS_URL


def test_API140_limits_are_shared_by_every_process_through_redis(database_url: str, redis_url: str) -> None:
    """Two app instances (two gunicorn workers) count against one limit when Redis stores it."""
    settings = make_settings(database_url, redis_url=redis_url, ratelimit_ingest="4 per minute")
    first, second = create_app(settings), create_app(settings)
    keys = new_account(first)
    body = {"event_type": "x", "visitor_id": f"r-{uuid.uuid4().hex}"}
    statuses = [post(app.test_client(), keys, "/events", body).status_code for app in (first, second) * 3]
    assert statuses == [202, 202, 202, 202, 429, 429]


def test_API111_deep_health_reports_redis(database_url: str, redis_url: str) -> None:
    app = create_app(make_settings(database_url, redis_url=redis_url))
    body = app.test_client().get("/api/v1/health?deep=1").get_json()
    assert body["checks"] == {"database": "ok", "redis": "ok", "shopify_api_version": "absent"}
    down = create_app(make_settings(database_url, redis_url="redis://127.0.0.1:1/0"))
    resp = down.test_client().get("/api/v1/health?deep=1")
    assert resp.status_code == 503 and resp.get_json()["checks"]["redis"] == "down"


def test_API140_redis_outage_falls_back_to_memory_limits(database_url: str) -> None:
    app = create_app(make_settings(database_url, redis_url="redis://127.0.0.1:1/0", ratelimit_ingest="2 per minute"))
    keys = new_account(app)
    statuses = [post(app.test_client(), keys, "/events", {"event_type": "x", "visitor_id": "o"}).status_code
                for _ in range(3)]
    assert statuses == [202, 202, 429]


def test_API13_cached_key_is_refused_right_after_revocation(database_url: str, redis_url: str) -> None:
    """Keys are cached in Redis, and `mbuzz revoke-api-key` clears the cache in the same command (Q-42)."""
    app = create_app(make_settings(database_url, redis_url=redis_url))
    other_process = create_app(make_settings(database_url, redis_url=redis_url))
    keys = new_account(app)
    headers = keys.headers()
    assert other_process.test_client().get("/api/v1/validate", headers=headers).status_code == 200  # cached now
    with app.config["MBUZZ"].sessions() as db:  # by id: a 12-character prefix may be shared by two accounts
        key_id = db.scalar(sa.select(m.ApiKey.id).where(m.ApiKey.key_digest == key_digest(keys.test_key)))
    result = app.test_cli_runner().invoke(args=["mbuzz", "revoke-api-key", str(key_id)])
    assert result.exit_code == 0, result.output
    resp = other_process.test_client().get("/api/v1/validate", headers=headers)
    assert resp.status_code == 401 and resp.get_json() == {"error": "API key has been revoked"}
