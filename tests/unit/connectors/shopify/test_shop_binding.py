"""Webhook shop binding (shopify.md SHP-33, SHP-34, SHP-78; decision SHP-33-D1; issue 15 item 12).

Only the body is signed, and in app mode every shop's deliveries are signed with the same app secret, so a
captured signed body verifies whatever `X-Shopify-Shop-Domain` it is sent with. Where the body names its own shop
(`shop/update` and `app/uninstalled`: `myshopify_domain`; the compliance topics: `shop_domain`), that name must be
the header's shop (and, in manual mode, the installation's): otherwise 401 `shop_mismatch` and nothing is stored.
The deduplication key is the webhook id *within the shop the delivery was accepted for*, so a delivery that named
another shop, whatever became of it, never turns the genuine delivery into a "duplicate".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from connectors.shopify import models as sm
from core.storage import models as m
from tests.unit.connectors.shopify.test_manual_mode import SIGNING_KEY, _connect
from tests.unit.connectors.shopify.test_orders import PROCESSED, SECRET, _at, _order, shop

__all__ = ["shop"]

AURORA = "aurora-lamps.myshopify.com"  # the seed's active app-mode installation (inst_01, acct_01)


def _other_installed_shop(app: Flask) -> str:
    """Another active app-mode installation, of another account: the target a replayed body would hit."""
    name = f"other-{uuid.uuid4().hex[:10]}.myshopify.com"
    now = app.config["MBUZZ"].now()
    with app.config["MBUZZ"].sessions.begin() as db:
        db.add(m.Installation(id=f"inst_{uuid.uuid4().hex[:12]}", shop_domain=name, account_id="acct_02",
                              environment="live", mode="app", status="active", installed_at=now,
                              created_at=now, updated_at=now))
    return name


def _send(client: FlaskClient, body: dict[str, Any], shop_header: str, topic: str, webhook_id: str,
          path: str = "/webhooks", key: str = SECRET, event_id: str | None = None) -> tuple[int, Any]:
    raw = json.dumps(body).encode()
    digest = base64.b64encode(hmac.new(key.encode(), raw, hashlib.sha256).digest()).decode()
    headers = {"X-Shopify-Hmac-Sha256": digest, "X-Shopify-Shop-Domain": shop_header, "X-Shopify-Topic": topic,
               "X-Shopify-Webhook-Id": webhook_id, "Content-Type": "application/json"}
    if event_id:
        headers["X-Shopify-Event-Id"] = event_id
    resp = client.post("/shopify" + path, data=raw, headers=headers)
    return resp.status_code, resp.get_json()


def _rows(app: Flask, webhook_id: str) -> list[tuple[str, str, str]]:
    with app.config["MBUZZ"].sessions() as db:
        return [(d.shop_domain, d.topic, d.status) for d in db.scalars(sa.select(sm.ShopifyWebhookDelivery).where(
            sm.ShopifyWebhookDelivery.webhook_id == webhook_id))]


def _installation(app: Flask, shop_name: str) -> m.Installation:
    with app.config["MBUZZ"].sessions() as db:
        found = db.scalars(sa.select(m.Installation).where(m.Installation.shop_domain == shop_name)).one()
        db.expunge(found)
        return found


def _webhook_id() -> str:
    return f"w-bind-{uuid.uuid4()}"


def _refused(status: int, answer: Any) -> bool:
    return status == 401 and answer["error"] == "shop_mismatch" and "X-Shopify-Shop-Domain" in answer["message"]


def test_SHP33_shop_update_naming_another_shop_is_refused_and_the_genuine_one_still_counts(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    other = _other_installed_shop(app)
    webhook_id, name = _webhook_id(), f"Aurora {uuid.uuid4().hex[:6]}"
    body = {"id": 954889, "name": name, "myshopify_domain": AURORA, "domain": "aurora-lamps.com",
            "currency": "AUD", "iana_timezone": "Australia/Sydney", "plan_name": "basic"}
    status, answer = _send(client, body, other, "shop/update", webhook_id)
    assert _refused(status, answer), answer
    assert _rows(app, webhook_id) == []  # nothing stored: the webhook id is not used up
    assert _installation(app, other).shop_name is None
    assert _send(client, body, AURORA, "shop/update", webhook_id) == (200, {"status": "accepted"})
    assert _rows(app, webhook_id) == [(AURORA, "shop/update", "processed")]
    assert _installation(app, AURORA).shop_name == name


def test_SHP33_a_replayed_app_uninstalled_cannot_uninstall_another_shop(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    other = _other_installed_shop(app)
    webhook_id = _webhook_id()
    body = {"id": 954889, "name": "Aurora Lamps", "myshopify_domain": AURORA, "domain": "aurora-lamps.com"}
    assert _refused(*_send(client, body, other, "app/uninstalled", webhook_id))
    assert _installation(app, other).status == "active" and _rows(app, webhook_id) == []


def test_SHP33_a_replayed_shop_redact_cannot_erase_another_shop(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    other = _other_installed_shop(app)
    webhook_id = _webhook_id()
    body = {"shop_id": 954889, "shop_domain": AURORA}
    assert _refused(*_send(client, body, other, "shop/redact", webhook_id))
    assert _installation(app, other).status == "active" and _rows(app, webhook_id) == []
    for topic in ("customers/redact", "customers/data_request"):
        assert _refused(*_send(client, {"shop_id": 954889, "shop_domain": AURORA, "customer": {"id": 1}}, other,
                               topic, _webhook_id()))


def test_SHP33_a_body_shop_that_is_not_a_shop_domain_is_refused(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    for claimed in ("not a domain", 954889, None, ["aurora-lamps.myshopify.com"]):
        webhook_id = _webhook_id()
        status, answer = _send(client, {"id": 954889, "myshopify_domain": claimed}, AURORA, "shop/update",
                               webhook_id)
        assert (status, answer["error"]) == (401, "shop_mismatch"), claimed
        assert _rows(app, webhook_id) == []
    # A body without the field at all (e.g. a subscription without it in includeFields): the header is the claim.
    assert _send(client, {"id": 954889, "name": "Aurora Lamps"}, AURORA, "shop/update", _webhook_id()) == (
        200, {"status": "accepted"})


def test_SHP34_an_order_sent_under_an_unknown_shop_does_not_use_up_the_genuine_webhook_id(shop) -> None:  # type: ignore[no-untyped-def]
    """Orders name no shop in their body (SHP-98's fields): the header is all there is. A copy under another
    shop's header is ignored (unknown shop) and recorded under that shop, and the genuine delivery with the same
    webhook id and event id is still processed."""
    app, client = shop
    _at(app, PROCESSED + timedelta(hours=2))  # long after checkout: recorded at once, not parked
    order = _order()
    webhook_id, event_id = _webhook_id(), f"e-bind-{uuid.uuid4()}"
    stranger = f"stranger-{uuid.uuid4().hex[:8]}.myshopify.com"
    assert _send(client, order, stranger, "orders/paid", webhook_id, event_id=event_id) == (
        200, {"status": "ignored", "reason": "unknown_shop"})
    assert _send(client, order, AURORA, "orders/paid", webhook_id, event_id=event_id) == (
        200, {"status": "accepted"})
    assert sorted(_rows(app, webhook_id)) == sorted([(stranger, "orders/paid", "ignored"),
                                                     (AURORA, "orders/paid", "processed")])
    with app.config["MBUZZ"].sessions() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(m.Conversion).where(
            m.Conversion.idempotency_key == f"shopify:inst_01:order:{order['id']}")) == 1
    # SHP-34 still holds within each shop: the same delivery again is a duplicate, under either header.
    assert _send(client, order, AURORA, "orders/paid", webhook_id, event_id=event_id) == (
        200, {"status": "duplicate"})
    assert _send(client, order, stranger, "orders/paid", webhook_id, event_id=event_id) == (
        200, {"status": "duplicate"})


def test_SHP78_manual_mode_body_must_name_the_installations_shop(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    shop_name, path, _ = _connect(app)
    webhook_id = _webhook_id()
    wrong = {"id": 1, "name": "Someone else", "myshopify_domain": AURORA}
    assert _refused(*_send(client, wrong, shop_name, "shop/update", webhook_id, path=path, key=SIGNING_KEY))
    assert _rows(app, webhook_id) == []
    right = {"id": 1, "name": "Manual Shop", "myshopify_domain": shop_name.upper()}  # SHP-15: case-insensitive
    assert _send(client, right, shop_name, "shop/update", webhook_id, path=path, key=SIGNING_KEY) == (
        200, {"status": "accepted"})
    assert _rows(app, webhook_id) == [(shop_name, "shop/update", "processed")]
    assert _installation(app, shop_name).shop_name == "Manual Shop"
