"""Manual mode (shopify.md SHP-77, SHP-78): a shop without the app sends its notification webhooks to
`/shopify/webhooks/m/{token}`, signed with its own signing key, and gets exactly what app mode gets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from connectors.shopify import models as sm
from connectors.shopify.install import create_manual_installation
from core.storage import models as m
from tests.unit.connectors.shopify.test_orders import PROCESSED, SECRET, _at, _ids, _order, shop

__all__ = ["shop"]

SIGNING_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0whsec"


def _connect(app: Flask, key: str = SIGNING_KEY) -> tuple[str, str, str]:
    """A manually connected shop of acct_02: (shop, webhook path, installation id)."""
    shop_name = f"manual-{next(_ids)}.myshopify.com"
    made = create_manual_installation(app.config["MBUZZ"], shop_name, key, "acct_02", "live")
    return shop_name, urlsplit(made.webhook_url).path.removeprefix("/shopify"), made.installation_id


def _send(client: FlaskClient, path: str, body: dict[str, Any], shop_name: str, key: str = SIGNING_KEY,
          topic: str = "orders/paid", webhook_id: str | None = None) -> Any:
    raw = json.dumps(body).encode()
    digest = base64.b64encode(hmac.new(key.encode(), raw, hashlib.sha256).digest()).decode()
    return client.post("/shopify" + path, data=raw, headers={
        "X-Shopify-Hmac-Sha256": digest, "X-Shopify-Shop-Domain": shop_name, "X-Shopify-Topic": topic,
        "X-Shopify-Webhook-Id": webhook_id or f"w-{next(_ids)}", "Content-Type": "application/json"})


def _ledger(app: Flask, shop_name: str) -> list[tuple[str, str]]:
    with app.config["MBUZZ"].sessions() as db:
        return [(d.topic, d.status) for d in db.scalars(sa.select(sm.ShopifyWebhookDelivery).where(
            sm.ShopifyWebhookDelivery.shop_domain == shop_name).order_by(sm.ShopifyWebhookDelivery.received_at))]


def test_SHP78_manual_webhooks_produce_the_same_conversion_as_app_mode(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    shop_name, path, installation_id = _connect(app)
    assert path.startswith("/webhooks/m/")
    _at(app, PROCESSED + timedelta(hours=2))  # long after checkout: recorded at once, not parked
    order = _order(note_attributes=[{"name": "_mbuzz_visitor_id", "value": "9a" * 32}])
    first = _send(client, path, order, shop_name, webhook_id="w-manual-dup-" + str(order["id"]))
    assert first.status_code == 200 and first.get_json() == {"status": "accepted"}
    again = _send(client, path, order, shop_name, webhook_id="w-manual-dup-" + str(order["id"]))
    assert again.get_json() == {"status": "duplicate"}  # SHP-34 as in app mode
    with app.config["MBUZZ"].sessions() as db:
        conversions = list(db.scalars(sa.select(m.Conversion).where(
            m.Conversion.idempotency_key == f"shopify:{installation_id}:order:{order['id']}")))
    assert len(conversions) == 1
    conv = conversions[0]
    assert (conv.account_id, conv.environment, conv.revenue_minor, conv.currency) == ("acct_02", "live", 12950,
                                                                                     "AUD")
    assert conv.origin == f"shopify:{installation_id}"
    assert _ledger(app, shop_name) == [("orders/paid", "processed")]


def test_SHP78_refusals_change_nothing(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    shop_name, path, _ = _connect(app)
    other_shop, other_path, _ = _connect(app, key="another-shops-signing-key")
    order = _order()
    refusals = [
        (_send(client, path, order, shop_name, key="not-the-key"), "invalid_hmac"),
        (_send(client, path, order, shop_name, key=SECRET), "invalid_hmac"),  # the app secret is not this shop's
        (_send(client, path, order, other_shop), "shop_mismatch"),  # a valid signature, another shop's header
        (_send(client, other_path, order, other_shop), "invalid_hmac"),  # signed with the first shop's key
        (_send(client, "/webhooks/m/unknown-token", order, shop_name), "unknown_connector"),
        (client.post("/shopify" + path, data=b"{}", headers={"X-Shopify-Shop-Domain": shop_name,
                                                             "X-Shopify-Topic": "orders/paid"}), "missing_hmac"),
    ]
    for resp, error in refusals:
        assert (resp.status_code, resp.get_json()) == (401, {"error": error})
    assert _ledger(app, shop_name) == [] and _ledger(app, other_shop) == []
    # The app-mode endpoint does not accept the shop's own signing key either.
    assert _send(client, "/webhooks", order, shop_name).status_code == 401


def test_SHP78_compliance_topics_do_not_exist_in_manual_mode(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    shop_name, path, _ = _connect(app)
    resp = _send(client, path, {"shop_domain": shop_name, "customer": {"id": 1}, "orders_to_redact": []},
                 shop_name, topic="customers/redact")
    assert resp.get_json() == {"status": "ignored", "reason": "unknown_topic"}
    assert _ledger(app, shop_name) == [("customers/redact", "ignored")]


def test_SHP77_cli_connects_a_store_and_prints_its_webhook_url_once(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    shop_name = f"cli-{next(_ids)}.myshopify.com"
    result = app.test_cli_runner().invoke(args=["mbuzz", "shopify-connect-manual", "--shop", shop_name,
                                                "--account", "acct_02", "--environment", "live"],
                                          input=SIGNING_KEY + "\n")
    assert result.exit_code == 0, result.output
    assert SIGNING_KEY not in result.output  # prompted without echo
    url = next(line.rsplit(" ", 1)[-1] for line in result.output.splitlines() if line.startswith("webhook URL"))
    assert "pk_px_" in result.output  # the custom-pixel snippet with its key
    order = _order(note_attributes=[{"name": "_mbuzz_visitor_id", "value": "9b" * 32}])
    assert _send(client, urlsplit(url).path.removeprefix("/shopify"), order, shop_name).get_json() == \
        {"status": "accepted"}
    again = app.test_cli_runner().invoke(args=["mbuzz", "shopify-connect-manual", "--shop", shop_name,
                                               "--account", "acct_02", "--environment", "live",
                                               "--signing-key", "k"])
    assert again.exit_code != 0 and "already connected" in again.output


def test_SHP78_SHP88_a_manual_store_erases_a_customer_from_the_cli(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop
    shop_name, path, _ = _connect(app)
    customer_id = next(_ids)
    _at(app, PROCESSED + timedelta(hours=2))
    customer = {"id": customer_id, "email": f"erase-{customer_id}@example.com", "first_name": "Erin",
                "updated_at": "2026-05-20T03:00:00Z", "created_at": "2026-05-20T03:00:00Z"}
    assert _send(client, path, customer, shop_name, topic="customers/create").get_json() == {"status": "accepted"}

    def identity() -> m.User | None:
        with app.config["MBUZZ"].sessions() as db:
            users = list(db.scalars(sa.select(m.User).where(m.User.account_id == "acct_02",
                                                            m.User.user_key == f"shopify:{customer_id}")))
            db.expunge_all()
        return users[0] if users else None

    found = identity()
    assert found is not None and found.traits.get("shopify_customer_id") == str(customer_id)
    result = app.test_cli_runner().invoke(args=["mbuzz", "shopify-delete-customer", "--shop", shop_name,
                                                "--customer-id", str(customer_id)])
    assert result.exit_code == 0, result.output
    assert identity() is None  # the external id is a tombstone now
    with app.config["MBUZZ"].sessions() as db:
        tombstone = db.get(m.User, ("acct_02", found.id))
        assert tombstone is not None and str(tombstone.user_key).startswith("redacted:") and tombstone.traits == {}
        assert tombstone.email_sha256 is None
