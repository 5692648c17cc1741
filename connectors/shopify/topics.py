"""Processing stored webhook deliveries by topic (shopify.md SHP-37, SHP-39).

Built so far: `shop/update` (installation metadata). The order, refund, customer, lifecycle and compliance
topics are stored durably and stay `stored` until their processors exist (issue 5); nothing is dropped.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from core.crypto import cipher
from core.storage.models import Installation, ShopifyWebhookDelivery

__all__ = ["COMPLIANCE", "HANDLED", "process_delivery"]

log = logging.getLogger("mbuzz.shopify")

HANDLED = frozenset({"orders/paid", "orders/create", "orders/cancelled", "refunds/create", "customers/create",
                     "customers/update", "shop/update", "app/uninstalled"})
COMPLIANCE = frozenset({"customers/data_request", "customers/redact", "shop/redact"})


def _shop_update(installation: Installation, body: dict[str, Any], now: datetime) -> None:
    """Installation metadata from the shop payload; no command (SHP-39)."""
    for column, key in (("shop_name", "name"), ("primary_domain", "domain"), ("currency", "currency"),
                        ("iana_timezone", "iana_timezone")):
        if body.get(key):
            setattr(installation, column, str(body[key]))
    if body.get("plan_name"):
        installation.plan_partner_development = body["plan_name"] in ("partner_test", "affiliate")
    installation.updated_at = now


def process_delivery(services: Any, delivery_id: str) -> None:
    """Run the topic's processing after the ledger commit; a failure marks the row `failed`, never raises."""
    settings = services.settings
    now = services.now()
    try:
        with services.sessions.begin() as db:
            delivery = db.get(ShopifyWebhookDelivery, delivery_id)
            if delivery is None or delivery.status != "stored" or delivery.body_enc is None:
                return
            if delivery.topic != "shop/update":
                return  # not built yet: the row stays `stored` for its processor (issue 5)
            raw = cipher(settings.encryption_keys, settings.secret_key).decrypt(delivery.body_enc.encode())
            body = json.loads(raw)
            installation = db.scalars(sa.select(Installation).where(
                Installation.shop_domain == delivery.shop_domain)).first()
            if installation is not None and isinstance(body, dict):
                _shop_update(installation, body, now)
            delivery.status, delivery.processed_at, delivery.attempts = "processed", now, delivery.attempts + 1
    except Exception as exc:  # SHP-36: the delivery was accepted; the row records the failure
        log.exception("webhook delivery %s failed", delivery_id)
        with services.sessions.begin() as db:
            delivery = db.get(ShopifyWebhookDelivery, delivery_id)
            if delivery is not None:
                delivery.status, delivery.error = "failed", f"{type(exc).__name__}: {exc}"[:200]
                delivery.attempts += 1
