"""Order processing on the real database (shopify.md SHP-46, SHP-51..SHP-55, SHP-58, SHP-62; quality.md Q-24, Q-25).

Orders are delivered through the webhook endpoint with the F1 payload as a base; time is moved with the
services' clock and retries run through the sweep, exactly as the worker or an inline request would run them.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from connectors.shopify import models as sm
from connectors.shopify.sweep import sweep_due
from core.storage import models as m
from gateway import create_app
from tests.conftest import make_settings
from tests.unit.connectors.sgtm.test_normalize import SEED, SHARED
from tools.fixtures import seed

SECRET = "test_app_secret"
F1 = json.loads((SHARED / "fixtures" / "shopify" / "F1.json").read_text())["steps"][0]["request"]["body"]
PROCESSED = datetime.fromisoformat("2026-05-20T03:13:50+00:00")
_ids = itertools.count(int(datetime.now().timestamp() * 1000) % 10**9 * 1000)


@pytest.fixture()
def shop(database_url: str) -> Iterator[tuple[Flask, FlaskClient]]:
    app = create_app(make_settings(database_url, shopify_api_secret=SECRET,
                                   shopify_api_key=SEED["config"]["SHOPIFY_API_KEY"]))
    seed(app, SEED)
    yield app, app.test_client()
    app.config["MBUZZ"].engine.dispose()


def _at(app: Flask, moment: datetime) -> None:
    app.config["MBUZZ"].clock = lambda: moment


def _order(**changes: object) -> dict[str, object]:
    """The F1 order under a fresh id, without its cart-attribute visitor unless `changes` put one back."""
    body = copy.deepcopy(F1)
    body.update(id=next(_ids), checkout_token=f"c1-{next(_ids):032x}", note_attributes=[])
    body.update(changes)
    return body


def _deliver(client: FlaskClient, body: dict[str, object], topic: str = "orders/paid") -> int:
    raw = json.dumps(body).encode()
    digest = base64.b64encode(hmac.new(SECRET.encode(), raw, hashlib.sha256).digest()).decode()
    resp = client.post("/shopify/webhooks", data=raw, headers={
        "X-Shopify-Hmac-Sha256": digest, "X-Shopify-Shop-Domain": "aurora-lamps.myshopify.com",
        "X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": f"w-{next(_ids)}", "Content-Type": "application/json"})
    return resp.status_code


def _row(app: Flask, order_id: object) -> m.ShopifyOrder:
    with app.config["MBUZZ"].sessions() as db:
        row = db.scalars(sa.select(m.ShopifyOrder).where(m.ShopifyOrder.order_id == str(order_id))).one()
        db.expunge(row)
        return row


def _conversion(app: Flask, order_id: object) -> m.Conversion | None:
    with app.config["MBUZZ"].sessions() as db:
        conv = db.scalars(sa.select(m.Conversion).where(
            m.Conversion.idempotency_key == f"shopify:inst_01:order:{order_id}")).first()
        if conv is not None:
            db.expunge(conv)
        return conv


def test_SHP51_Q25_unlinked_web_order_is_parked_retried_and_finally_recorded_unattributed(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    order = _order()
    _at(app, PROCESSED + timedelta(minutes=1))
    assert _deliver(client, order) == 200
    row = _row(app, order["id"])
    assert (row.status, row.attempts) == ("parked", 1)
    assert _conversion(app, order["id"]) is None  # not yet: the pixel may still link it
    first = row.first_attempt_at
    assert first is not None
    for offset, attempts in ((30, 2), (120, 3), (600, 4)):
        _at(app, first + timedelta(seconds=offset - 1))
        sweep_due(app.config["MBUZZ"])
        assert _row(app, order["id"]).attempts == attempts - 1  # not due a second early
        _at(app, first + timedelta(seconds=offset))
        sweep_due(app.config["MBUZZ"])
        assert (_row(app, order["id"]).status, _row(app, order["id"]).attempts) == ("parked", attempts)
    _at(app, first + timedelta(minutes=60))
    sweep_due(app.config["MBUZZ"])
    row = _row(app, order["id"])
    assert (row.status, row.attempts, row.attribution_method) == ("converted", 5, "none")
    conv = _conversion(app, order["id"])
    assert conv is not None and conv.revenue_minor == 12950 and conv.properties["attribution_method"] == "none"


def test_SHP52_pixel_checkout_link_resolves_a_parked_order_at_once(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    order = _order()
    _at(app, PROCESSED + timedelta(minutes=1))
    assert _deliver(client, order) == 200
    assert _row(app, order["id"]).status == "parked"
    visitor = "ab" * 32
    batch = {"v": 1, "ingest_key": "pk_px_3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e", "account_id": "acct_01",
             "shop_domain": "aurora-lamps.myshopify.com", "consent": {"analytics": True}, "visitor_id": visitor,
             "events": [{"id": f"sh-{next(_ids)}", "name": "checkout_completed", "timestamp": "2026-05-20T03:13:40Z",
                         "url": "https://aurora-lamps.com/checkouts/cn/x/thank-you",
                         "data": {"checkout_token": order["checkout_token"], "is_first_order": False,
                                  "order_id": f"gid://shopify/OrderIdentity/{order['id']}"}}]}
    resp = client.post("/shopify/pixel/v1/events", data=json.dumps(batch), content_type="text/plain")
    assert resp.status_code == 202 and resp.get_json()["accepted"] == 1
    row = _row(app, order["id"])
    assert (row.status, row.attribution_method, row.visitor_id) == ("converted", "pixel_checkout_token", visitor)
    conv = _conversion(app, order["id"])
    assert conv is not None and conv.is_acquisition is False  # the checkout said it was not a first order


def test_SHP62_Q24_refund_before_its_order_waits_and_applies_when_the_order_arrives(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    order = _order(note_attributes=F1["note_attributes"])
    refund = {"id": next(_ids), "order_id": order["id"], "processed_at": "2026-05-21T00:00:00Z",
              "transactions": [{"kind": "refund", "status": "success", "amount": "40.00", "currency": "AUD"},
                               {"kind": "refund", "status": "failure", "amount": "40.00", "currency": "AUD"}]}
    _at(app, PROCESSED + timedelta(days=1))
    assert _deliver(client, refund, topic="refunds/create") == 200
    with app.config["MBUZZ"].sessions() as db:
        waiting = db.scalars(sa.select(sm.ShopifyWebhookDelivery).where(
            sm.ShopifyWebhookDelivery.order_id == str(order["id"]),
            sm.ShopifyWebhookDelivery.topic == "refunds/create")).one()
        assert waiting.status == "waiting_order"
    assert _deliver(client, order) == 200
    conv = _conversion(app, order["id"])
    assert conv is not None
    assert (conv.revenue_minor, conv.refunded_minor, conv.net_revenue_minor) == (12950, 4000, 8950)


def test_SHP46_excluded_test_orders_emit_nothing(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    with app.config["MBUZZ"].sessions.begin() as db:
        inst = db.get(m.Installation, "inst_01")
        assert inst is not None
        inst.settings = {**inst.settings, "exclude_test_orders": True}
    try:
        order = _order(test=True, note_attributes=F1["note_attributes"])
        _at(app, PROCESSED + timedelta(minutes=1))
        assert _deliver(client, order) == 200
        assert _conversion(app, order["id"]) is None
        with app.config["MBUZZ"].sessions() as db:
            delivery = db.scalars(sa.select(sm.ShopifyWebhookDelivery).where(
                sm.ShopifyWebhookDelivery.order_id == str(order["id"]))).one()
        assert (delivery.status, delivery.error) == ("ignored", "test_order_excluded")
    finally:
        with app.config["MBUZZ"].sessions.begin() as db:
            inst = db.get(m.Installation, "inst_01")
            assert inst is not None
            inst.settings = {**inst.settings, "exclude_test_orders": False}


def test_SHP58_a_converted_order_never_converts_twice(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    order = _order(note_attributes=F1["note_attributes"])
    _at(app, PROCESSED + timedelta(minutes=1))
    assert _deliver(client, order) == 200
    assert _deliver(client, {**order, "current_total_price": "999.00",
                             "current_total_price_set": None}) == 200  # a later delivery of the same order
    with app.config["MBUZZ"].sessions() as db:
        rows = db.scalars(sa.select(m.Conversion).where(
            m.Conversion.idempotency_key == f"shopify:inst_01:order:{order['id']}")).all()
    assert [c.revenue_minor for c in rows] == [12950]


def test_SHP74_pixel_timestamp_without_offset_is_read_as_utc(shop) -> None:  # type: ignore[no-untyped-def]
    """A browser clock string without an offset is an instant in UTC, not a naive time that breaks storage."""
    app, client = shop
    _at(app, PROCESSED)
    batch = {"v": 1, "ingest_key": "pk_px_3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e", "account_id": "acct_01",
             "shop_domain": "aurora-lamps.myshopify.com", "consent": {"analytics": True}, "visitor_id": "cd" * 32,
             "events": [{"id": f"sh-{next(_ids)}", "name": "page_viewed", "timestamp": "2026-05-20T03:13:00",
                         "url": "https://aurora-lamps.com/", "data": {}}]}
    resp = client.post("/shopify/pixel/v1/events", data=json.dumps(batch), content_type="text/plain")
    assert resp.status_code == 202 and resp.get_json()["accepted"] == 1
    with app.config["MBUZZ"].sessions() as db:
        event = db.scalars(sa.select(m.Event).where(m.Event.idempotency_key.like(
            f"shopify_pixel:inst_01:{batch['events'][0]['id']}"))).one()  # type: ignore[index]
    assert event.occurred_at == datetime.fromisoformat("2026-05-20T03:13:00+00:00")
