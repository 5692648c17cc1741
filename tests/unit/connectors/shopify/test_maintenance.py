"""The Shopify daily maintenance on PostgreSQL and Redis (shopify.md SHP-8, SHP-27, SHP-37, SHP-87).

The maintenance works on every row of the ledger, so this module has its own PostgreSQL database, emptied and
seeded again before each test. Deliveries go through the webhook endpoint (inline mode) with the services'
clock set; Admin API calls reach the local fake Shopify. A delivery fails the way it does in production when
the database refuses the core's writes: an operator's statement holds an exclusive lock on `conversions` and
this database's `lock_timeout` ends the wait; releasing the lock removes the cause.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from rq import Queue

from connectors.shopify import models as sm
from connectors.shopify.install import API_TOPICS
from connectors.shopify.maintenance import GATE_KEY, RETRIED_MARK, run_daily_maintenance, run_if_due
from connectors.shopify.queue import SHOPIFY_QUEUE
from core.storage import models as m
from core.storage.db import make_engine, migrate
from gateway import create_app
from tests.conftest import _fresh_postgres, make_settings
from tests.unit.connectors.sgtm.test_normalize import SEED, SHARED
from tools.fake_shopify import FakeShopify
from tools.fixtures import seed

pytestmark = pytest.mark.postgres

SECRET = SEED["config"]["SHOPIFY_API_SECRET"]
PUBLIC = SEED["config"]["MBUZZ_PUBLIC_URL"]
AURORA = "aurora-lamps.myshopify.com"
REDIS_URL = os.environ.get("MBUZZ_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
F1 = json.loads((SHARED / "fixtures" / "shopify" / "F1.json").read_text())["steps"][0]["request"]["body"]
T0 = datetime.fromisoformat("2026-05-20T03:14:50+00:00")  # one minute after F1's processed_at
_ids = itertools.count(int(datetime.now().timestamp() * 1000) % 10**9 * 1000)


# --- the database, the apps and their clock -------------------------------------------------------------------

@pytest.fixture(scope="module")
def maintenance_db(database_url: str, worker_id: str) -> Iterator[str]:
    if not database_url.startswith("postgresql"):
        pytest.skip("the daily maintenance is tested on PostgreSQL")
    url = _fresh_postgres(database_url, f"maint_{worker_id}")
    base, name = url.rsplit("/", 1)
    admin = make_engine(base + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # a blocked write fails instead of waiting (see `conversions_locked`)
        conn.execute(sa.text(f"ALTER DATABASE \"{name}\" SET lock_timeout = '300ms'"))
    migrate(url)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture()
def db_url(maintenance_db: str) -> str:
    """The module's database, emptied: the maintenance sees only what the test puts there."""
    tables = ", ".join(f'"{t.name}"' for t in m.Base.metadata.sorted_tables)
    engine = make_engine(maintenance_db)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {tables} CASCADE"))
    engine.dispose()
    return maintenance_db


@pytest.fixture()
def make_app(db_url: str, fake: FakeShopify) -> Iterator[Callable[..., Flask]]:
    """App instances (as separate processes would have) on the test's database; Admin calls go to `fake`."""
    apps: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        app = create_app(make_settings(db_url, shopify_api_secret=SECRET, public_url=PUBLIC,
                                       shopify_api_key=SEED["config"]["SHOPIFY_API_KEY"],
                                       shopify_outbound_base=fake.base_url, **overrides))
        seed(app, SEED)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.config["MBUZZ"].engine.dispose()


@pytest.fixture()
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture(scope="module")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            pytest.fail(f"CI: Redis is required at {REDIS_URL}")
        pytest.skip("Redis not reachable")
    return REDIS_URL


def _at(app: Flask, moment: datetime) -> None:
    app.config["MBUZZ"].clock = lambda: moment


@contextmanager
def conversions_locked(url: str) -> Iterator[None]:
    """An operator's `ALTER TABLE conversions` in progress: the core's writes fail until it ends."""
    engine = make_engine(url)
    with engine.connect() as conn:
        conn.execute(sa.text("LOCK TABLE conversions IN ACCESS EXCLUSIVE MODE"))
        try:
            yield
        finally:
            conn.rollback()
    engine.dispose()


# --- deliveries and what they left ----------------------------------------------------------------------------

def _order() -> dict[str, Any]:
    """F1 under a fresh id, linked by its cart attribute: processed at once, never parked."""
    body: dict[str, Any] = copy.deepcopy(F1)
    body.update(id=next(_ids), checkout_token=f"c1-{next(_ids):032x}")
    return body


def _deliver(app: Flask, body: dict[str, Any], topic: str = "orders/paid", shop: str = AURORA) -> str:
    """POST the signed delivery; the id of the ledger row it created."""
    raw = json.dumps(body).encode()
    digest = base64.b64encode(hmac.new(SECRET.encode(), raw, hashlib.sha256).digest()).decode()
    webhook_id = f"w-{next(_ids)}"
    resp = app.test_client().post("/shopify/webhooks", data=raw, headers={
        "X-Shopify-Hmac-Sha256": digest, "X-Shopify-Shop-Domain": shop, "X-Shopify-Topic": topic,
        "X-Shopify-Webhook-Id": webhook_id, "Content-Type": "application/json"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    with app.config["MBUZZ"].sessions() as db:
        return str(db.scalar(sa.select(sm.ShopifyWebhookDelivery.id).where(
            sm.ShopifyWebhookDelivery.webhook_id == webhook_id)))


def _failed_order(app: Flask, url: str) -> tuple[str, dict[str, Any]]:
    """An `orders/paid` delivery accepted while the core cannot write: 200, and the row is `failed`."""
    order = _order()
    with conversions_locked(url):
        delivery_id = _deliver(app, order)
    row = _delivery(app, delivery_id)
    assert row.status == "failed" and "lock timeout" in (row.error or "")
    return delivery_id, order


def _delivery(app: Flask, delivery_id: str) -> sm.ShopifyWebhookDelivery:
    with app.config["MBUZZ"].sessions() as db:
        row: sm.ShopifyWebhookDelivery | None = db.get(sm.ShopifyWebhookDelivery, delivery_id)
        assert row is not None
        db.expunge(row)
        return row


def _conversion_revenue(app: Flask, order: dict[str, Any]) -> list[int | None]:
    with app.config["MBUZZ"].sessions() as db:
        return list(db.scalars(sa.select(m.Conversion.revenue_minor).where(
            m.Conversion.idempotency_key == f"shopify:inst_01:order:{order['id']}")))


def _maintain(app: Flask, moment: datetime) -> dict[str, int]:
    _at(app, moment)
    return run_daily_maintenance(app.config["MBUZZ"])


# --- SHP-37: failed deliveries are retried once ---------------------------------------------------------------

def test_SHP37_failed_delivery_younger_than_7_days_is_retried_and_processed_once_the_cause_is_gone(
        app: Flask, db_url: str) -> None:
    _at(app, T0)
    delivery_id, order = _failed_order(app, db_url)
    assert _conversion_revenue(app, order) == []
    # Within the hour after receipt the RQ retries of the first processing may still run: left for tomorrow.
    assert _maintain(app, T0 + timedelta(minutes=30))["retried"] == 0
    assert _delivery(app, delivery_id).status == "failed"
    counts = _maintain(app, T0 + timedelta(days=7) - timedelta(minutes=1))
    assert (counts["retried"], counts["recovered"], counts["still_failed"]) == (1, 1, 0)
    row = _delivery(app, delivery_id)
    assert (row.status, row.error) == ("processed", None)
    assert _conversion_revenue(app, order) == [12950]


def test_SHP37_failed_delivery_7_days_old_is_not_retried(app: Flask, db_url: str) -> None:
    _at(app, T0)
    delivery_id, order = _failed_order(app, db_url)
    before = _delivery(app, delivery_id)
    assert _maintain(app, T0 + timedelta(days=7))["retried"] == 0
    after = _delivery(app, delivery_id)
    assert (after.status, after.error, after.attempts) == ("failed", before.error, before.attempts)
    assert _conversion_revenue(app, order) == []


def test_SHP37_a_row_the_daily_job_retried_is_never_retried_by_it_again(app: Flask, db_url: str) -> None:
    _at(app, T0)
    delivery_id, order = _failed_order(app, db_url)
    attempts = _delivery(app, delivery_id).attempts
    with conversions_locked(db_url):  # the cause is still there on the first day
        counts = _maintain(app, T0 + timedelta(days=1))
    assert (counts["retried"], counts["recovered"], counts["still_failed"]) == (1, 0, 1)
    row = _delivery(app, delivery_id)
    assert row.status == "failed" and row.attempts == attempts + 1
    assert row.error is not None and row.error.startswith(RETRIED_MARK) and "lock timeout" in row.error
    # The cause is gone on the second day, but the row had its one daily retry.
    assert _maintain(app, T0 + timedelta(days=2))["retried"] == 0
    again = _delivery(app, delivery_id)
    assert (again.status, again.error, again.attempts) == ("failed", row.error, row.attempts)
    assert _conversion_revenue(app, order) == []


# --- SHP-8: ledger bodies, SHP-87: data request exports -------------------------------------------------------

def test_SHP8_bodies_are_nulled_30_days_after_receipt_whatever_the_status(app: Flask, db_url: str) -> None:
    _at(app, T0)
    processed = _deliver(app, _order())
    unknown_shop = _deliver(app, _order(), shop="someone-else.myshopify.com")
    failed, _ = _failed_order(app, db_url)
    _at(app, T0 + timedelta(days=1))
    younger = _deliver(app, _order())
    statuses = {d: _delivery(app, d).status for d in (processed, unknown_shop, failed, younger)}
    assert statuses == {processed: "processed", unknown_shop: "ignored", failed: "failed", younger: "processed"}

    assert _maintain(app, T0 + timedelta(days=30) - timedelta(seconds=1))["bodies_nulled"] == 0
    assert all(_delivery(app, d).body_enc is not None for d in statuses)

    assert _maintain(app, T0 + timedelta(days=30))["bodies_nulled"] == 3
    assert {d: _delivery(app, d).body_enc is None for d in statuses} == {
        processed: True, unknown_shop: True, failed: True, younger: False}
    assert {d: _delivery(app, d).status for d in statuses} == statuses  # only the body goes


def test_SHP87_data_request_export_is_deleted_after_30_days(app: Flask) -> None:
    _at(app, T0)
    _deliver(app, {"shop_id": 954889, "shop_domain": AURORA, "orders_requested": [],
                   "customer": {"id": 7209318820011, "email": "jane.doe@example.com"},
                   "data_request": {"id": 9999}}, topic="customers/data_request")

    def request() -> sm.ShopifyDataRequest:
        with app.config["MBUZZ"].sessions() as db:
            row: sm.ShopifyDataRequest = db.scalars(sa.select(sm.ShopifyDataRequest).where(
                sm.ShopifyDataRequest.data_request_id == "9999")).one()
            db.expunge(row)
            return row

    assert request().status == "ready" and request().export_enc is not None
    assert _maintain(app, T0 + timedelta(days=30) - timedelta(seconds=1))["data_requests_expired"] == 0
    assert request().status == "ready" and request().export_enc is not None
    assert _maintain(app, T0 + timedelta(days=30))["data_requests_expired"] == 1
    expired = request()
    assert (expired.status, expired.export_enc, expired.customer_id) == ("expired", None, "7209318820011")
    assert _maintain(app, T0 + timedelta(days=31))["data_requests_expired"] == 0


def test_SHP10_checkout_links_are_deleted_90_days_after_they_were_last_seen(app: Flask) -> None:
    def link(token: str, seen: datetime) -> None:
        with app.config["MBUZZ"].sessions.begin() as db:
            db.add(sm.ShopifyCheckoutLink(account_id="acct_01", id=f"scl_{token}", environment="live",
                                         installation_id="inst_01", checkout_token=token, visitor_id="ab" * 32,
                                         first_seen_at=seen, last_seen_at=seen))

    def tokens() -> set[str]:
        with app.config["MBUZZ"].sessions() as db:
            return set(db.scalars(sa.select(sm.ShopifyCheckoutLink.checkout_token)))

    link("old", T0)
    link("recent", T0 + timedelta(days=1))
    assert _maintain(app, T0 + timedelta(days=90) - timedelta(seconds=1))["checkout_links_deleted"] == 0
    assert _maintain(app, T0 + timedelta(days=90))["checkout_links_deleted"] == 1
    assert tokens() == {"recent"}


# --- SHP-27: subscriptions re-checked daily -------------------------------------------------------------------

def test_SHP27_daily_job_recreates_a_subscription_shopify_removed(app: Flask, fake: FakeShopify) -> None:
    uri = f"{PUBLIC}/shopify/webhooks"
    fake.shops[AURORA].subscriptions = [{"id": f"gid://shopify/WebhookSubscription/{i}", "topic": topic,
                                         "uri": uri} for i, topic in enumerate(API_TOPICS) if topic != "ORDERS_PAID"]
    counts = _maintain(app, T0)
    assert (counts["subscriptions_created"], counts["subscription_checks_queued"], counts["errors"]) == (1, 0, 0)
    assert sorted(s["topic"] for s in fake.shops[AURORA].subscriptions) == sorted(API_TOPICS)
    assert "webPixelCreate" not in fake.operations(AURORA)  # step 2 only


# --- once a day across processes ------------------------------------------------------------------------------

@pytest.fixture(params=["redis", "database"])
def two_workers(request: pytest.FixtureRequest, make_app: Callable[..., Flask]) -> Iterator[tuple[Flask, Flask]]:
    """Two worker processes sharing the gate: Redis when configured, the database without it."""
    if request.param == "database":
        yield make_app(), make_app()
        return
    url = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(url)
    queue = Queue(SHOPIFY_QUEUE, connection=client)
    client.delete(GATE_KEY)
    queue.empty()  # type: ignore[no-untyped-call]
    yield make_app(redis_url=url), make_app(redis_url=url)
    client.delete(GATE_KEY)
    queue.empty()  # type: ignore[no-untyped-call]


def test_SHP37_SHP8_daily_job_runs_at_most_once_per_24_h_across_processes(
        app: Flask, two_workers: tuple[Flask, Flask]) -> None:
    first, second = two_workers
    _at(app, T0)
    early = _deliver(app, _order())
    _at(app, T0 + timedelta(hours=12))
    late = _deliver(app, _order())
    run_at = T0 + timedelta(days=30)

    _at(first, run_at)
    assert run_if_due(first.config["MBUZZ"]) is not None
    assert (_delivery(app, early).body_enc, _delivery(app, late).body_enc is None) == (None, False)

    _at(second, run_at + timedelta(hours=13))  # `late` is 30 days old now, but the job ran 13 h ago
    assert run_if_due(second.config["MBUZZ"]) is None
    assert run_if_due(first.config["MBUZZ"]) is None
    assert _delivery(app, late).body_enc is not None

    _at(second, run_at + timedelta(hours=24))
    assert run_if_due(second.config["MBUZZ"]) is not None
    assert _delivery(app, late).body_enc is None
    if first.config["MBUZZ"].redis is not None:  # each run queued one subscription re-check (SHP-27)
        queued = Queue(SHOPIFY_QUEUE, connection=first.config["MBUZZ"].redis).jobs
        assert [j.func_name for j in queued] == ["connectors.shopify.install.recheck_subscriptions_job"] * 2


def test_SHP37_cli_runs_the_maintenance_once_a_day_unless_forced(app: Flask, make_app: Callable[..., Flask]) -> None:
    _at(app, T0)
    early = _deliver(app, _order())
    _at(app, T0 + timedelta(hours=12))
    late = _deliver(app, _order())
    other = make_app()  # another process (cron on another host, or a worker without Redis)
    _at(app, T0 + timedelta(days=30))
    _at(other, T0 + timedelta(days=30, hours=13))

    ran = app.test_cli_runner().invoke(args=["mbuzz", "shopify-maintenance"])
    assert ran.exit_code == 0, ran.output
    assert "bodies_nulled=1" in ran.output and "errors=0" in ran.output
    assert _delivery(app, early).body_enc is None and _delivery(app, late).body_enc is not None

    skipped = other.test_cli_runner().invoke(args=["mbuzz", "shopify-maintenance"])
    assert skipped.exit_code == 0 and skipped.output.startswith("not due")
    assert _delivery(app, late).body_enc is not None

    forced = other.test_cli_runner().invoke(args=["mbuzz", "shopify-maintenance", "--force"])
    assert forced.exit_code == 0 and "bodies_nulled=1" in forced.output
    assert _delivery(app, late).body_enc is None
