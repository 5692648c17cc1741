"""Rate-limit keys in a shared Redis (api.md API-140, dashboard.md DSH-4, shopify.md SHP-71; issue 15 item 11 (c)).

Every limit the gateway keeps in Redis lives under `MBUZZ_REDIS_PREFIX` (like the streams and queues of
core.queue), so two deployments sharing one Redis never share limits; and no key holds a raw e-mail or IP address
(quality rule: no raw IP or e-mail stored anywhere): the dashboard login and the pixel's per-IP limit key by a
keyed digest.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid

import pytest
import redis

from core.queue import PREFIX
from edge.limits import address_key
from gateway import create_app
from tests.conftest import LIMITS_REDIS_URL, make_settings, new_account
from tests.unit.gateway.dashboard.test_dashboard import _login_token


@pytest.fixture()
def store(limits_store: redis.Redis) -> redis.Redis:
    return limits_store


def _keys(store: redis.Redis, pattern: str) -> list[str]:
    return [k.decode() for k in store.scan_iter(pattern, count=1000)]


def test_API140_DSH4_SHP71_limit_keys_are_under_the_redis_prefix_and_hold_no_raw_address(
        database_url: str, store: redis.Redis) -> None:
    app = create_app(make_settings(database_url, redis_url=LIMITS_REDIS_URL, ratelimit_data="2 per minute"))
    keys = new_account(app)
    client = app.test_client()
    assert client.get("/api/v1/validate", headers=keys.headers()).status_code == 200
    statuses = [client.get("/api/v1/data/events", headers=keys.headers()).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    digest = hashlib.sha256(keys.test_key.encode()).hexdigest()
    per_key = _keys(store, f"*{digest}*")
    assert per_key and all(k.startswith(f"{PREFIX}:") for k in per_key), per_key

    address = f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"  # a documentation address of its own
    email = f"nobody-{uuid.uuid4().hex[:10]}@example.com"
    visitor = app.test_client()
    visitor.environ_base["REMOTE_ADDR"] = address
    resp = visitor.post("/dashboard/login", data={"email": email, "password": "wrong",
                                                  "csrf_token": _login_token(visitor)})
    assert resp.status_code == 401
    assert visitor.post("/shopify/pixel/v1/events", data="{}", content_type="text/plain").status_code == 400

    login = _keys(store, f"{PREFIX}:limits:*login*")
    assert len(login) >= 2, login  # the e-mail's count and the address's count
    assert _keys(store, f"*{email}*") == [] and _keys(store, f"*{address}*") == []
    assert _keys(store, f"*{email.split('@')[0]}*") == []


def test_API141_failed_authentication_counts_are_under_the_prefix_and_hold_no_raw_address(
        database_url: str, store: redis.Redis) -> None:
    """API-141's per-IP count of failed authentications lives in Redis like the other limits: under the prefix,
    keyed by a digest of the address, never the address itself."""
    # 3 per minute: a failure is remembered for 20 s (a limit's key lives as long as it counts), time to look
    app = create_app(make_settings(database_url, redis_url=LIMITS_REDIS_URL, ratelimit_auth_failures="3 per minute"))
    address = f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    bad = {"Authorization": "Bearer sk_test_" + "0" * 32}
    assert client.get("/api/v1/validate", headers=bad).status_code == 401
    digest = address_key("test-secret", "ip", address)
    assert _keys(store, f"*authfail*{digest}*") == [f"{PREFIX}:limits:authfail:{digest}"]
    assert _keys(store, f"*{address}*") == []  # other runs' keys may be here too: look only at this address
