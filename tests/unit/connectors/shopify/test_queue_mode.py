"""Shopify webhooks in queue mode: a real gunicorn gateway, a real `flask mbuzz worker` (RQ, with its scheduler),
real Redis and PostgreSQL (shopify.md SHP-34, SHP-36, SHP-37, SHP-51, SHP-54, SHP-58).

The gateway answers a verified delivery once its ledger row is committed and its job is on `<prefix>-shopify`;
the worker then produces the conversion. Nothing here sleeps for a fixed time: every wait polls the database or
Redis with a deadline. There is no fake-clock setting for live processes (`Services.clock` can only be replaced
in-process), so "time passing" for a parked order is done the way the scheduler and the sweep see it: the
delayed RQ job's due time, or the order row's `next_attempt_at`, is moved to now.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import sqlalchemy as sa
from flask import Flask
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from connectors.shopify import models as sm
from connectors.shopify.queue import SHOPIFY_QUEUE
from core import accounts
from core.jobs import QUEUE as DRAIN_QUEUE
from core.storage import models as m
from tests.integration.processes import BIN, ROOT, env_for, gunicorn, queued_redis_url, start_worker, stop, wait_until
from tests.unit.connectors.sgtm.test_normalize import SEED, SHARED
from tools.fixtures import seed

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

SECRET = SEED["config"]["SHOPIFY_API_SECRET"]
SHOP = "aurora-lamps.myshopify.com"
F1 = json.loads((SHARED / "fixtures" / "shopify" / "F1.json").read_text())["steps"][0]["request"]
ARTIFACTS = ROOT / "test-artifacts" / "shopify-queue"
DEADLINE = 120.0  # generous: a wait returns as soon as its condition holds; speed is not under test


@pytest.fixture(scope="module")
def redis_url(worker_id: str, is_postgres: bool) -> str:
    return queued_redis_url(worker_id, is_postgres)


class Stack:
    """One live gateway in queue mode for the module, and the worker, which a test may stop and start."""

    def __init__(self, base: str, env: dict[str, str], redis_url: str, logs: Path) -> None:
        self.base, self.env, self.logs = base, env, logs
        self.redis = redis.Redis.from_url(redis_url)
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_log = logs / "worker-0.log"
        self._starts = 0

    def start_worker(self) -> None:
        if self.worker is None or self.worker.poll() is not None:
            self._starts += 1
            self.worker_log = self.logs / f"worker-{self._starts}.log"
            self.worker = start_worker(self.env, self.worker_log)

    def stop_worker(self) -> None:
        if self.worker is not None:
            stop(self.worker)
            self.worker = None

    def idle(self) -> bool:
        """Nothing waiting or running on the drain and Shopify queues (delayed jobs do not count)."""
        for name in (SHOPIFY_QUEUE, DRAIN_QUEUE):
            queue = Queue(name, connection=self.redis)
            if queue.count or StartedJobRegistry(queue=queue).get_job_ids(cleanup=False):
                return False
        return True

    def deliver(self, body: dict[str, Any] | bytes, webhook_id: str, topic: str = "orders/paid",
                event_id: str | None = None) -> tuple[int, Any]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        digest = base64.b64encode(hmac.new(SECRET.encode(), raw, hashlib.sha256).digest()).decode()
        headers = {**F1["headers"], "X-Shopify-Hmac-Sha256": digest, "X-Shopify-Topic": topic,
                   "X-Shopify-Webhook-Id": webhook_id, "X-Shopify-Event-Id": event_id or str(uuid.uuid4())}
        resp = requests.post(self.base + "/shopify/webhooks", data=raw, headers=headers, timeout=30)
        return resp.status_code, resp.json()


@pytest.fixture(scope="module")
def stack(app: Flask, database_url: str, redis_url: str) -> Iterator[Stack]:
    seed(app, SEED)  # the seed's installation owns aurora-lamps.myshopify.com (acct_01, live)
    # This xdist worker's Redis database and prefix are shared with the integration tests it ran before (a worker
    # killed mid-job by a fault drill leaves its job in the started registry): `idle` must see this stack's alone.
    redis.Redis.from_url(redis_url).flushdb()
    logs = ARTIFACTS / str(os.getpid())
    logs.mkdir(parents=True, exist_ok=True)
    env = env_for(database_url, redis_url, SHOPIFY_API_SECRET=SECRET, SHOPIFY_API_KEY=SEED["config"]["SHOPIFY_API_KEY"])
    with gunicorn(env, log=logs / "gunicorn.log") as (base, _):
        live = Stack(base, env, redis_url, logs)
        try:
            yield live
        finally:
            live.stop_worker()


def _order(**changes: Any) -> dict[str, Any]:
    """The F1 order (cart-attribute visitor, 129.50 AUD) under a fresh order id and checkout token."""
    body = copy.deepcopy(F1["body"])
    body.update(id=int.from_bytes(secrets.token_bytes(6), "big"), checkout_token=f"c1-{secrets.token_hex(16)}")
    body.update(changes)
    return body


def _key(order: dict[str, Any]) -> str:
    return f"shopify:inst_01:order:{order['id']}"


def _conversions(app: Flask, order: dict[str, Any]) -> list[m.Conversion]:
    with app.config["MBUZZ"].sessions() as db:
        rows = list(db.scalars(sa.select(m.Conversion).where(m.Conversion.account_id == "acct_01",
                                                             m.Conversion.idempotency_key == _key(order))))
        db.expunge_all()
        return rows


def _deliveries(app: Flask, webhook_id: str) -> list[sm.ShopifyWebhookDelivery]:
    with app.config["MBUZZ"].sessions() as db:
        rows = list(db.scalars(sa.select(sm.ShopifyWebhookDelivery).where(
            sm.ShopifyWebhookDelivery.webhook_id == webhook_id)))
        db.expunge_all()
        return rows


def _order_row(app: Flask, order: dict[str, Any]) -> m.ShopifyOrder | None:
    with app.config["MBUZZ"].sessions() as db:
        row = db.scalars(sa.select(m.ShopifyOrder).where(m.ShopifyOrder.installation_id == "inst_01",
                                                         m.ShopifyOrder.order_id == str(order["id"]))).first()
        if row is not None:
            db.expunge(row)
        return row


def _processed_and_converted(app: Flask, webhook_id: str, order: dict[str, Any]) -> bool:
    rows = _deliveries(app, webhook_id)
    return bool(rows) and rows[0].status == "processed" and bool(_conversions(app, order))


def _unlinked_recent_order(customer_id: int) -> dict[str, Any]:
    """A web order processed a minute ago with no visitor anywhere yet: SHP-51 parks it."""
    processed = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="seconds")
    email = f"buyer-{customer_id}@example.com"
    customer = {**F1["body"]["customer"], "id": customer_id, "email": email,
                "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}"}
    return _order(note_attributes=[], processed_at=processed, created_at=processed, email=email, customer=customer)


def _park(app: Flask, stack: Stack, order: dict[str, Any]) -> m.ShopifyOrder:
    stack.start_worker()
    webhook_id = str(uuid.uuid4())
    assert stack.deliver(order, webhook_id) == (200, {"status": "accepted"})

    def parked() -> bool:
        row = _order_row(app, order)
        return row is not None and row.status == "parked"

    assert wait_until(parked, DEADLINE, 0.1), _deliveries(app, webhook_id)
    row = _order_row(app, order)
    assert row is not None and row.attempts == 1 and row.first_attempt_at is not None
    assert row.next_attempt_at == row.first_attempt_at + timedelta(seconds=30)  # SHP-51: the first retry at +30 s
    assert (_deliveries(app, webhook_id)[0].status, _conversions(app, order)) == ("processed", [])
    return row


def _retry_jobs(stack: Stack, row: m.ShopifyOrder) -> list[Any]:
    """The delayed `order_retry_job`s of this order row waiting in the Shopify queue's scheduler registry."""
    registry = ScheduledJobRegistry(queue=Queue(SHOPIFY_QUEUE, connection=stack.redis))
    jobs = Job.fetch_many(registry.get_job_ids(), connection=stack.redis)  # None: run and deleted meanwhile
    return [j for j in jobs
            if j is not None and j.func_name == "connectors.shopify.sweep.order_retry_job" and j.args[1] == row.id]


def test_SHP36_SHP37_delivery_is_answered_before_processing_and_the_worker_converts_it(
    app: Flask, stack: Stack
) -> None:
    stack.stop_worker()  # nothing may process the delivery before the answer is checked
    order = _order()
    webhook_id = str(uuid.uuid4())
    assert stack.deliver(order, webhook_id) == (200, {"status": "accepted"})
    (row,) = _deliveries(app, webhook_id)
    assert (row.status, row.attempts, row.topic, row.order_id) == ("stored", 0, "orders/paid", str(order["id"]))
    assert _conversions(app, order) == [] and _order_row(app, order) is None  # answered, not yet processed
    waiting = Queue(SHOPIFY_QUEUE, connection=stack.redis).get_jobs()
    assert [(j.func_name, j.args) for j in waiting if j.args == (row.id,)] == \
        [("connectors.shopify.topics.delivery_job", (row.id,))]  # SHP-37: an RQ job on `<prefix>-shopify`

    stack.start_worker()
    assert wait_until(lambda: _processed_and_converted(app, webhook_id, order), DEADLINE, 0.1), \
        (_deliveries(app, webhook_id), stack.worker_log.read_text()[-3000:])
    assert wait_until(stack.idle, DEADLINE, 0.1)
    (conversion,) = _conversions(app, order)  # exactly one
    assert (conversion.revenue_minor, conversion.currency, conversion.environment, conversion.conversion_type) == \
        (12950, "AUD", "live", "purchase")
    assert conversion.properties["attribution_method"] == "cart_attribute"
    (row,) = _deliveries(app, webhook_id)
    assert (row.status, row.attempts, row.error) == ("processed", 1, None) and row.processed_at is not None
    order_row = _order_row(app, order)
    assert order_row is not None and (order_row.status, order_row.conversion_key) == ("converted", _key(order))
    assert order_row.visitor_id == SEED["named_values"]["visitor_A"]


def test_SHP34_SHP58_same_delivery_twice_in_queue_mode_is_one_conversion(app: Flask, stack: Stack) -> None:
    stack.start_worker()
    order = _order()
    raw = json.dumps(order).encode()
    webhook_id, event_id = str(uuid.uuid4()), str(uuid.uuid4())
    assert stack.deliver(raw, webhook_id, event_id=event_id) == (200, {"status": "accepted"})
    assert stack.deliver(raw, webhook_id, event_id=event_id) == (200, {"status": "duplicate"})  # same webhook id
    assert stack.deliver(raw, str(uuid.uuid4()), event_id=event_id) == (200, {"status": "duplicate"})  # same event
    assert wait_until(lambda: _processed_and_converted(app, webhook_id, order), DEADLINE, 0.1)
    assert wait_until(stack.idle, DEADLINE, 0.1)
    assert [c.revenue_minor for c in _conversions(app, order)] == [12950]
    (row,) = _deliveries(app, webhook_id)
    assert (row.status, row.redeliveries, row.attempts) == ("processed", 2, 1)
    with app.config["MBUZZ"].sessions() as db:
        stored = db.scalar(sa.select(sa.func.count()).select_from(sm.ShopifyWebhookDelivery).where(
            sm.ShopifyWebhookDelivery.order_id == str(order["id"])))
    assert stored == 1


def test_SHP51_SHP54_parked_order_gets_its_delayed_retry_from_the_worker_scheduler(app: Flask, stack: Stack) -> None:
    with app.config["MBUZZ"].sessions.begin() as db:
        live_key = accounts.create_api_key(db, "acct_01", "live").plaintext
    headers = {"Authorization": f"Bearer {live_key}"}
    visitor, customer_id = secrets.token_hex(32), int.from_bytes(secrets.token_bytes(5), "big")
    started = (datetime.now(UTC) - timedelta(minutes=20)).isoformat(timespec="seconds")
    stack.start_worker()
    resp = requests.post(stack.base + "/api/v1/sessions", headers=headers, timeout=30, json={
        "visitor_id": visitor, "session_id": secrets.token_hex(8), "started_at": started,
        "url": "https://aurora-lamps.com/?utm_source=newsletter&utm_medium=email"})
    assert resp.status_code == 202, resp.text
    order = _unlinked_recent_order(customer_id)
    row = _park(app, stack, order)
    (job,) = _retry_jobs(stack, row)  # SHP-54: enqueue_in for the attempt it was scheduled for
    assert job.args == ("acct_01", row.id, 1)
    due = ScheduledJobRegistry(queue=Queue(SHOPIFY_QUEUE, connection=stack.redis)).get_scheduled_time(job)
    assert row.next_attempt_at is not None and abs((due - row.next_attempt_at).total_seconds()) < 2

    # Meanwhile the shopper's identity reaches the core: the chain's step 5 (customer identity) can now link.
    resp = requests.post(stack.base + "/api/v1/identify", headers=headers, timeout=30,
                         json={"user_id": f"shopify:{customer_id}", "visitor_id": visitor})
    assert resp.status_code in (200, 202), resp.text

    def linked() -> bool:
        with app.config["MBUZZ"].sessions() as db:
            return db.scalar(sa.select(sa.func.count()).select_from(m.VisitorLink).join(
                m.User, sa.and_(m.User.account_id == m.VisitorLink.account_id, m.User.id == m.VisitorLink.user_id))
                .where(m.User.account_id == "acct_01", m.User.user_key == f"shopify:{customer_id}")) == 1

    assert wait_until(linked, DEADLINE, 0.1)
    after_identify = _order_row(app, order)
    assert after_identify is not None and (after_identify.status, after_identify.attempts) == ("parked", 1)

    # 30 s pass for the scheduler: the delayed job becomes due now, and the worker's scheduler enqueues it.
    ScheduledJobRegistry(queue=Queue(SHOPIFY_QUEUE, connection=stack.redis)).schedule(job, datetime.now(UTC))

    def converted() -> bool:
        found = _order_row(app, order)
        return found is not None and found.status == "converted" and bool(_conversions(app, order))

    assert wait_until(converted, DEADLINE, 0.1), _order_row(app, order)
    assert wait_until(stack.idle, DEADLINE, 0.1)
    final = _order_row(app, order)
    assert final is not None
    assert (final.attempts, final.attribution_method, final.visitor_id, final.next_attempt_at) == \
        (2, "customer_identity", visitor, None)
    (conversion,) = _conversions(app, order)
    assert (conversion.revenue_minor, conversion.currency, conversion.user_id is not None) == (12950, "AUD", True)
    assert conversion.properties["attribution_method"] == "customer_identity"
    assert _retry_jobs(stack, final) == []  # converted: no further retry is scheduled


def test_SHP54_shopify_sweep_cli_runs_the_due_retry_and_the_stale_delayed_job_does_nothing(
    app: Flask, stack: Stack
) -> None:
    order = _unlinked_recent_order(int.from_bytes(secrets.token_bytes(5), "big"))
    row = _park(app, stack, order)
    (stale,) = _retry_jobs(stack, row)
    # 30 s pass for the sweep: the row's first attempt and next retry move 30 s into the past.
    assert row.first_attempt_at is not None and row.next_attempt_at is not None
    first = row.first_attempt_at - timedelta(seconds=30)
    with app.config["MBUZZ"].sessions.begin() as db:
        db.execute(sa.update(m.ShopifyOrder).where(m.ShopifyOrder.account_id == row.account_id,
                                                   m.ShopifyOrder.id == row.id)
                   .values(first_attempt_at=first, next_attempt_at=row.next_attempt_at - timedelta(seconds=30)))
    swept = subprocess.run([str(BIN / "flask"), "--app", "gateway", "mbuzz", "shopify-sweep"], cwd=ROOT,
                           env=stack.env, capture_output=True, text=True, timeout=60)
    assert swept.returncode == 0, swept.stderr
    assert swept.stdout.strip().endswith("due retries run") and int(swept.stdout.split()[0]) >= 1
    retried = _order_row(app, order)
    assert retried is not None
    assert (retried.status, retried.attempts, retried.next_attempt_at) == ("parked", 2, first + timedelta(minutes=2))
    (scheduled,) = [j for j in _retry_jobs(stack, retried) if j.id != stale.id]  # the sweep scheduled attempt 3
    assert scheduled.args == ("acct_01", row.id, 2)

    # The job scheduled for attempt 1 now fires: the row moved on, so it changes nothing (SHP-54).
    ScheduledJobRegistry(queue=Queue(SHOPIFY_QUEUE, connection=stack.redis)).schedule(stale, datetime.now(UTC))
    assert wait_until(lambda: stale.id not in {j.id for j in _retry_jobs(stack, retried)} and stack.idle(),
                      DEADLINE, 0.1)
    after = _order_row(app, order)
    assert after is not None and (after.status, after.attempts, after.next_attempt_at) == \
        ("parked", 2, first + timedelta(minutes=2))
    assert _conversions(app, order) == []
