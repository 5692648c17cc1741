"""PostgreSQL down, Redis up: known keys keep working past the key cache's TTL; revocation still wins.

api.md API-13 (revocation is immediate), quality.md Q-22 (the gateway keeps accepting into the log).
docs/api.md API-13-D2. Real gunicorn and RQ worker; the gateway's PostgreSQL goes through a proxy the test
cuts. The cache TTL is shortened to 1 s through ``MBUZZ_KEY_CACHE_TTL_S`` so no test waits a minute.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
import sqlalchemy as sa
from flask import Flask

from core.accounts import create_api_key, key_digest
from core.storage import models as m
from gateway import create_app
from tests.conftest import make_settings, new_account
from tests.integration.processes import Proxy, env_for, gunicorn, queued_redis_url, start_worker, stop, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "outage"
PATIENCE = 120.0  # waits return as soon as their condition holds; speed is not under test
TTL_S = 1.0


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


def _send(base: str, key: str, visitor: str) -> requests.Response:
    return requests.post(base + "/api/v1/events", json={"event_type": "page_view", "visitor_id": visitor},
                         headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_API13_Q22_known_keys_work_past_the_cache_ttl_while_postgres_is_down(
    app: Flask, database_url: str, redis_url: str, pg_proxy: tuple[Proxy, str], logs: Path
) -> None:
    """A cached key keeps answering 202 after its cache entry went stale during the outage (it answered 503), and
    its events are drained exactly once afterwards; a key revoked before the outage answers 401 during it; a key
    never seen answers 503 (it cannot be verified)."""
    proxy, proxied_db = pg_proxy
    keys = new_account(app)
    with app.config["MBUZZ"].sessions.begin() as db:
        revoked = create_api_key(db, keys.account_id, "test", name="to revoke")
        unseen = create_api_key(db, keys.account_id, "test", name="never used")
    env = env_for(proxied_db, redis_url, MBUZZ_KEY_CACHE_TTL_S=str(TTL_S))
    accepted: set[str] = set()
    with gunicorn(env, log=logs / "gunicorn.log") as (base, _):
        for key in (keys.test_key, revoked.plaintext):
            warm = _send(base, key, "v-warm")
            assert warm.status_code == 202, warm.text
            accepted.add(warm.json()["events"][0]["id"])
        # The operator revokes one key while everything is up (the CLI clears the shared cache, API-13).
        operator = create_app(make_settings(database_url, redis_url=redis_url))
        result = operator.test_cli_runner().invoke(args=["mbuzz", "revoke-api-key", revoked.id])
        assert result.exit_code == 0, result.output
        assert _send(base, revoked.plaintext, "v-warm").status_code == 401
        proxy.cut()
        time.sleep(TTL_S + 0.5)  # every cache entry is past its TTL now: the database would be asked
        for i in range(6):
            resp = _send(base, keys.test_key, f"v-{i}")
            assert resp.status_code == 202, resp.text
            assert resp.headers["X-Mbuzz-Processing"] == "queued"
            accepted.add(resp.json()["events"][0]["id"])
        refused = _send(base, revoked.plaintext, "v-x")
        assert refused.status_code == 401 and refused.json() == {"error": "API key has been revoked"}
        unknown = _send(base, unseen.plaintext, "v-x")
        assert unknown.status_code == 503 and unknown.headers["Retry-After"] == "5"
        proxy.restore()
        back = _send(base, keys.test_key, "v-back")  # the database answers again and refreshes the entry
        assert back.status_code == 202, back.text
        accepted.add(back.json()["events"][0]["id"])
        verified = _send(base, unseen.plaintext, "v-y")  # the database can verify it now
        assert verified.status_code == 202, verified.text
        accepted.add(verified.json()["events"][0]["id"])
    worker = start_worker(env_for(database_url, redis_url), logs / "worker.log")
    try:
        def stored() -> list[str]:
            with app.config["MBUZZ"].sessions() as db:
                return list(db.scalars(sa.select(m.Event.id).where(m.Event.account_id == keys.account_id)))

        assert wait_until(lambda: len(stored()) >= len(accepted), PATIENCE, 0.5)
        time.sleep(1.0)  # anything processed twice would show up now
        ids = stored()
        assert len(ids) == len(set(ids))
        assert set(ids) == accepted
    finally:
        stop(worker)
    with app.config["MBUZZ"].sessions() as db:  # the revoked key is revoked in the database too
        row = db.scalar(sa.select(m.ApiKey).where(m.ApiKey.key_digest == key_digest(revoked.plaintext)))
        assert row is not None and row.revoked_at is not None
