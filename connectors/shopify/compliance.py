"""The mandatory compliance topics (shopify.md §17, SHP-87..SHP-89), processed on receipt, never at Shopify's
30-day deadline.

A data request builds an encrypted export of what is held about one customer; a customer redaction deletes
the connector's own links to that customer and asks the core to tombstone the identity; a shop redaction
deletes everything the shop brought. Core rows change only through `redact` commands, appended before the
connector deletes its own rows, so a crash in between repeats the redaction instead of skipping it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from connectors.shopify.envelopes import email_hash, envelope, rfc3339, shopify_id
from connectors.shopify.models import (
    ShopifyCheckoutLink,
    ShopifyCustomer,
    ShopifyDataRequest,
    ShopifySettingsAudit,
    ShopifyWebhookDelivery,
)
from connectors.shopify.orders import Outcome, conversion_key
from core.crypto import cipher
from core.ids import new_id
from core.money import currency_exponent, format_minor
from core.storage.models import (
    ApiKey,
    Conversion,
    Event,
    Installation,
    ShopifyOrder,
    User,
    Visitor,
    VisitorAlias,
    VisitorLink,
)
from core.storage.models import Session as VisitSession
from core.storage.tenancy import all_tenants
from edge.services import AppServices

__all__ = ["compliance_delivery", "delete_customer_data"]

EXPORT_KEPT = timedelta(days=30)
ENVIRONMENTS = ("live", "test")


def tombstone(secret_key: str, external_id: str) -> str:
    """SHP-88: an external id nobody can look up again, stable so a repeated redaction changes nothing."""
    digest = hmac.new(secret_key.encode(), external_id.encode(), hashlib.sha256).hexdigest()
    return f"redacted:{digest[:32]}"


def _customer_visitors(db: Session, account_id: str, user_key: str) -> list[tuple[str, str, str]]:
    """(environment, visitor server id, visitor public id) of every visitor linked to the identity."""
    return [tuple(row) for row in db.execute(  # type: ignore[misc]
        sa.select(Visitor.environment, Visitor.id, Visitor.visitor_key)
        .join(VisitorLink, sa.and_(VisitorLink.account_id == Visitor.account_id,
                                   VisitorLink.environment == Visitor.environment,
                                   VisitorLink.visitor_id == Visitor.id))
        .join(User, sa.and_(User.account_id == VisitorLink.account_id, User.environment == VisitorLink.environment,
                            User.id == VisitorLink.user_id))
        .where(Visitor.account_id == account_id, User.user_key == user_key))]


def _customer_orders(db: Session, installation: Installation, customer_id: str, listed: list[str]) -> list[str]:
    ids = set(db.scalars(sa.select(ShopifyOrder.order_id).where(
        ShopifyOrder.account_id == installation.account_id, ShopifyOrder.installation_id == installation.id,
        ShopifyOrder.customer_id == customer_id)))
    return sorted(ids | set(listed))


def _listed(body: dict[str, Any], field: str) -> list[str]:
    return [i for i in (shopify_id(v) for v in body.get(field) or []) if i]


def _data_request(services: AppServices, db: Session, installation: Installation | None, shop: str,
                  body: dict[str, Any], now: datetime) -> Outcome:
    """SHP-87: the export holds this customer's data only, encrypted at rest, for 30 days."""
    customer = body.get("customer") if isinstance(body.get("customer"), dict) else {}
    customer_id = shopify_id((customer or {}).get("id"))
    request_id = shopify_id((body.get("data_request") or {}).get("id")) if isinstance(
        body.get("data_request"), dict) else None
    export: dict[str, Any] = {"data_request_id": request_id, "shop_domain": shop, "customer_id": customer_id,
                              "generated_at": rfc3339(now), "email_sha256": email_hash((customer or {}).get("email")),
                              "identity_external_ids": [], "order_ids": [], "conversion_keys": [],
                              "conversions": [], "visitor_ids": [], "sessions": [], "events": [],
                              "checkout_links": []}
    if installation is not None and installation.account_id is not None and customer_id:
        account_id = installation.account_id
        user_key = f"shopify:{customer_id}"
        orders = _customer_orders(db, installation, customer_id, _listed(body, "orders_requested"))
        keys = [conversion_key(installation.id, o) for o in orders]
        visitors = _customer_visitors(db, account_id, user_key)
        visitor_ids = [v[1] for v in visitors]
        export["identity_external_ids"] = sorted(set(db.scalars(sa.select(User.user_key).where(
            User.account_id == account_id, User.user_key == user_key))))
        export.update(order_ids=orders, conversion_keys=keys, visitor_ids=sorted({v[2] for v in visitors}))
        for conv in db.scalars(sa.select(Conversion).where(Conversion.account_id == account_id,
                                                           Conversion.idempotency_key.in_(keys))):
            revenue = None if conv.revenue_minor is None else format_minor(conv.revenue_minor,
                                                                           currency_exponent(conv.currency))
            export["conversions"].append({
                "key": conv.idempotency_key, "type": conv.conversion_type, "time": rfc3339(conv.converted_at),
                "revenue": revenue, "currency": conv.currency,
                "attribution_method": (conv.properties or {}).get("attribution_method")})
        export["sessions"] = [{"start": rfc3339(s.started_at), "channel": s.channel, "landing_url": s.landing_url}
                              for s in db.scalars(sa.select(VisitSession).where(
                                  VisitSession.account_id == account_id, VisitSession.visitor_id.in_(visitor_ids))
                                  .order_by(VisitSession.started_at))]
        export["events"] = [{"type": e.event_type, "time": rfc3339(e.occurred_at), "url": e.url}
                            for e in db.scalars(sa.select(Event).where(
                                Event.account_id == account_id, Event.visitor_id.in_(visitor_ids))
                                .order_by(Event.occurred_at))]
        export["checkout_links"] = [
            {"checkout_token": c.checkout_token, "order_id": c.order_id, "visitor_id": c.visitor_id,
             "first_seen_at": rfc3339(c.first_seen_at), "last_seen_at": rfc3339(c.last_seen_at)}
            for c in db.scalars(sa.select(ShopifyCheckoutLink).where(
                ShopifyCheckoutLink.account_id == account_id, ShopifyCheckoutLink.installation_id == installation.id,
                ShopifyCheckoutLink.order_id.in_(orders)))]
    settings = services.settings
    sealed = cipher(settings.encryption_keys, settings.secret_key).encrypt(json.dumps(export).encode()).decode()
    db.add(ShopifyDataRequest(id=new_id("sdr", now), shop_domain=shop, data_request_id=request_id,
                              customer_id=customer_id, status="ready", export_enc=sealed, created_at=now,
                              ready_at=now, expires_at=now + EXPORT_KEPT))
    return Outcome()


def _customer_redact(services: AppServices, db: Session, installation: Installation | None, shop: str,
                     body: dict[str, Any], now: datetime) -> Outcome:
    """SHP-88: the connector's own links go now; the core tombstones the identity through `redact`."""
    customer = body.get("customer") if isinstance(body.get("customer"), dict) else {}
    customer_id = shopify_id((customer or {}).get("id"))
    db.execute(sa.update(ShopifyWebhookDelivery).where(
        ShopifyWebhookDelivery.shop_domain == shop, ShopifyWebhookDelivery.customer_id == customer_id)
        .values(body_enc=None))
    if installation is None or installation.account_id is None or customer_id is None:
        return Outcome()
    account_id, user_key = installation.account_id, f"shopify:{customer_id}"
    orders = _customer_orders(db, installation, customer_id, _listed(body, "orders_to_redact"))
    visitors = _customer_visitors(db, account_id, user_key)
    public_ids = [v[2] for v in visitors]
    db.execute(sa.delete(ShopifyCheckoutLink).where(
        ShopifyCheckoutLink.account_id == account_id, ShopifyCheckoutLink.installation_id == installation.id,
        sa.or_(ShopifyCheckoutLink.order_id.in_(orders), ShopifyCheckoutLink.visitor_id.in_(public_ids))))
    db.execute(sa.delete(ShopifyCustomer).where(
        ShopifyCustomer.account_id == account_id, ShopifyCustomer.installation_id == installation.id,
        ShopifyCustomer.customer_id == customer_id))
    db.execute(sa.update(ShopifyOrder).where(
        ShopifyOrder.account_id == account_id, ShopifyOrder.installation_id == installation.id,
        ShopifyOrder.order_id.in_(orders)).values(customer_id=None, email_sha256=None))
    db.execute(sa.delete(VisitorAlias).where(
        VisitorAlias.account_id == account_id, VisitorAlias.namespace == f"shopify_client:{installation.id}",
        VisitorAlias.visitor_key.in_(public_ids)))
    key = f"shopify:{installation.id}:redact:customer:{customer_id}"
    hidden = tombstone(services.settings.secret_key, user_key)
    return Outcome(commands=[envelope(
        "redact", account_id, environment, installation.id, key, scope="identity", user_id=user_key,
        email_sha256=email_hash((customer or {}).get("email")),
        conversion_keys=[conversion_key(installation.id, o) for o in orders], tombstone=hidden)
        for environment in ENVIRONMENTS])


def _shop_redact(db: Session, installation: Installation | None, shop: str) -> Outcome:
    """SHP-89: the core deletes what the shop's origin created, then the connector forgets the shop."""
    db.execute(sa.update(ShopifyWebhookDelivery).where(ShopifyWebhookDelivery.shop_domain == shop)
               .values(body_enc=None))
    if installation is None:
        return Outcome()
    if installation.status == "active":  # installed again since Shopify scheduled the redaction
        return Outcome(status="ignored", error="reinstalled")
    inst_id, account_id = installation.id, installation.account_id

    def forget_shop(db: Session) -> None:
        shop_rows = all_tenants("shop/redact: every row of the shop, by its installation")
        for model in (ShopifyOrder, ShopifyCheckoutLink, ShopifyCustomer, ShopifySettingsAudit):
            db.execute(sa.delete(model).where(model.installation_id == inst_id), execution_options=shop_rows)
        db.execute(sa.delete(ApiKey).where(ApiKey.installation_id == inst_id), execution_options=shop_rows)
        db.execute(sa.delete(VisitorAlias).where(VisitorAlias.namespace == f"shopify_client:{inst_id}"),
                   execution_options=shop_rows)
        db.execute(sa.delete(ShopifyDataRequest).where(ShopifyDataRequest.shop_domain == shop))
        db.execute(sa.update(ShopifyWebhookDelivery).where(ShopifyWebhookDelivery.shop_domain == shop)
                   .values(body_enc=None))
        db.execute(sa.delete(Installation).where(Installation.id == inst_id))

    commands = [] if account_id is None else [
        envelope("redact", account_id, environment, inst_id, f"shopify:{inst_id}:redact:shop", scope="origin")
        for environment in ENVIRONMENTS]
    return Outcome(commands=commands, finish=[forget_shop])


def compliance_delivery(services: AppServices, db: Session, delivery: ShopifyWebhookDelivery,
                        installation: Installation | None, body: dict[str, Any], now: datetime) -> Outcome:
    shop = delivery.shop_domain
    if delivery.topic == "customers/data_request":
        outcome = _data_request(services, db, installation, shop, body, now)
    elif delivery.topic == "customers/redact":
        outcome = _customer_redact(services, db, installation, shop, body, now)
    else:
        outcome = _shop_redact(db, installation, shop)
    delivery_id = delivery.id

    def forget_payload(db: Session) -> None:  # a compliance payload names a person: not kept once handled
        db.execute(sa.update(ShopifyWebhookDelivery).where(ShopifyWebhookDelivery.id == delivery_id)
                   .values(body_enc=None))

    outcome.finish.append(forget_payload)
    return outcome


def delete_customer_data(services: AppServices, shop: str, customer_id: str, email: str | None = None) -> bool:
    """SHP-78: in manual mode there are no compliance webhooks; the merchant asks for the same erasure as
    `customers/redact` (SHP-88) from the dashboard or the CLI. False when the shop is not connected."""
    from connectors.shopify.topics import settle

    now = services.now()
    with services.sessions() as db:
        installation = db.scalars(sa.select(Installation).where(Installation.shop_domain == shop)).first()
        if installation is None or installation.account_id is None:
            return False
        body = {"customer": {"id": customer_id, "email": email}, "orders_to_redact": []}
        outcome = _customer_redact(services, db, installation, shop, body, now)
        settle(services, db, outcome, now)
        db.commit()
    return True
