"""Webhook receipt (shopify.md SHP-32..SHP-36; quality.md Q-43): verified, deduplicated, stored encrypted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from connectors.shopify import models as sm
from core.crypto import cipher
from core.storage import models as m
from gateway import create_app
from tests.conftest import make_settings
from tests.unit.connectors.sgtm.test_normalize import SEED
from tools.fixtures import seed

SECRET = "test_app_secret"
@pytest.fixture()
def shop(tmp_path: Path) -> Iterator[tuple[Flask, FlaskClient]]:
    """A fresh database with the seed (its installation owns aurora-lamps.myshopify.com)."""
    from core.storage.db import migrate

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    migrate(url)
    app = create_app(make_settings(url, shopify_api_secret=SECRET, shopify_api_key=SEED["config"]["SHOPIFY_API_KEY"]))
    seed(app, SEED)
    yield app, app.test_client()


def _deliver(client: FlaskClient, body: bytes, webhook_id: str, event_id: str | None = "e-1",
             topic: str = "orders/create", secret: str = SECRET) -> tuple[int, object]:
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    headers = {"X-Shopify-Hmac-Sha256": digest, "X-Shopify-Shop-Domain": "aurora-lamps.myshopify.com",
               "X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": webhook_id, "Content-Type": "application/json"}
    if event_id:
        headers["X-Shopify-Event-Id"] = event_id
    resp = client.post("/shopify/webhooks", data=body, headers=headers)
    return resp.status_code, resp.get_json()


def test_SHP34_duplicates_count_redeliveries_and_store_once(shop: tuple[Flask, FlaskClient]) -> None:
    app, client = shop
    body = json.dumps({"id": 5396439498987, "customer": {"id": 7001}, "email": "jane@example.com"}).encode()
    assert _deliver(client, body, "w-1") == (200, {"status": "accepted"})
    assert _deliver(client, body, "w-1") == (200, {"status": "duplicate"})  # same webhook id
    assert _deliver(client, body, "w-2") == (200, {"status": "duplicate"})  # same shop, topic and event id
    with app.config["MBUZZ"].sessions() as db:
        (row,) = db.scalars(sa.select(sm.ShopifyWebhookDelivery)).all()
    # Processed once: the order has no currency, so the row fails with the field named (SHP-2), kept for retry.
    assert (row.webhook_id, row.redeliveries, row.status, row.attempts) == ("w-1", 2, "failed", 1)
    assert row.error is not None and "currency: missing" in row.error
    assert (row.order_id, row.customer_id) == ("5396439498987", "7001")
    assert row.body_enc is not None and b"jane@example.com" not in row.body_enc.encode()  # encrypted at rest
    settings = app.config["MBUZZ"].settings
    assert cipher(settings.encryption_keys, settings.secret_key).decrypt(row.body_enc.encode()) == body


def test_SHP32_SHP33_refusals_store_nothing(shop: tuple[Flask, FlaskClient]) -> None:
    app, client = shop
    body = b'{"id": 1}'
    assert _deliver(client, body, "w-3", secret="wrong") == (401, {"error": "invalid_hmac"})
    assert _deliver(client, body, "w-4", topic="") == (400, {"error": "missing_topic"})
    assert client.post("/shopify/webhooks", data=b"x" * (5 * 1024 * 1024 + 1)).status_code == 413
    with app.config["MBUZZ"].sessions() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(sm.ShopifyWebhookDelivery)) == 0


def test_SHP35_pending_connect_is_deferred(shop: tuple[Flask, FlaskClient]) -> None:
    app, client = shop
    with app.config["MBUZZ"].sessions.begin() as db:
        db.execute(sa.update(m.Installation).values(status="pending_connect"))
    assert _deliver(client, b'{"id": 2}', "w-5", event_id="e-5") == (200, {"status": "accepted"})
    with app.config["MBUZZ"].sessions() as db:
        assert db.scalar(sa.select(sm.ShopifyWebhookDelivery.status)) == "deferred"


def test_SHP32_long_headers_and_odd_ids_are_stored_not_refused(shop: tuple[Flask, FlaskClient]) -> None:
    app, client = shop
    body = json.dumps({"id": "9" * 40, "customer": {"id": True}}).encode()
    assert _deliver(client, body, "w" * 400, event_id="e" * 400) == (200, {"status": "accepted"})
    with app.config["MBUZZ"].sessions() as db:
        row = db.scalars(sa.select(sm.ShopifyWebhookDelivery)).one()
    assert (len(row.webhook_id), len(row.event_id or ""), row.order_id, row.customer_id) == (255, 255, None, None)
