"""Linking an order to a visitor (shopify.md SHP-50): the first step that finds a visitor wins.

The steps go from the most direct evidence (a visitor id the storefront put in the cart) to the weakest (an
identity whose visitors browsed before the purchase). Fingerprints are never used for orders: an IP and a user
agent are shared by too many shoppers to attribute revenue to one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from connectors.shopify.models import ShopifyCheckoutLink
from core.settings import load_config
from core.storage.models import Installation, SgtmOrderLink, ShopifyOrder, User, Visitor, VisitorLink
from core.storage.models import Session as VisitSession

__all__ = ["Link", "chain_steps", "sgtm_links"]

VISITOR_ID = re.compile(r"[0-9a-f]{64}")
SGTM_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Link:
    method: str
    visitor_id: str | None
    is_first_order: bool | None = None


def _cart_attribute(body: dict[str, Any]) -> str | None:
    for attribute in body.get("note_attributes") or []:
        if isinstance(attribute, dict) and attribute.get("name") == "_mbuzz_visitor_id":
            value = attribute.get("value")
            if isinstance(value, str) and VISITOR_ID.fullmatch(value):
                return value
    return None


def sgtm_links(db: Session, order: ShopifyOrder) -> list[SgtmOrderLink]:
    """SGTM-31/SHP-50 step 4: the sGTM purchases of this order — transaction id = the order's id, name (with or
    without `#`) or confirmation number, within 24 h of `processed_at` — locked, oldest first."""
    if order.processed_at is None:
        return []
    names = [order.order_id, order.name, (order.name or "").removeprefix("#"), order.confirmation_number]
    return list(db.scalars(sa.select(SgtmOrderLink).where(
        SgtmOrderLink.account_id == order.account_id, SgtmOrderLink.environment == order.environment,
        SgtmOrderLink.transaction_id.in_(list(dict.fromkeys(n for n in names if n))),
        SgtmOrderLink.occurred_at >= order.processed_at - SGTM_WINDOW,
        SgtmOrderLink.occurred_at <= order.processed_at + SGTM_WINDOW,
    ).order_by(SgtmOrderLink.occurred_at, SgtmOrderLink.id).with_for_update()))


def _identity_visitor(db: Session, account_id: str, environment: str, users: sa.Select[Any], at: datetime,
                      lookback_days: int) -> str | None:
    """Among the identity's visitors, the one with the latest session started in the lookback before `at`."""
    return db.scalar(
        sa.select(Visitor.visitor_key)
        .join(VisitorLink, sa.and_(VisitorLink.account_id == Visitor.account_id,
                                   VisitorLink.environment == Visitor.environment,
                                   VisitorLink.visitor_id == Visitor.id))
        .join(VisitSession, sa.and_(VisitSession.account_id == Visitor.account_id,
                                    VisitSession.environment == Visitor.environment,
                                    VisitSession.visitor_id == Visitor.id))
        .where(Visitor.account_id == account_id, Visitor.environment == environment,
               VisitorLink.user_id.in_(users), VisitSession.started_at <= at,
               VisitSession.started_at >= at - timedelta(days=lookback_days))
        .order_by(VisitSession.started_at.desc()).limit(1))


def chain_steps(db: Session, installation: Installation, order: ShopifyOrder, body: dict[str, Any],
                converted_at: datetime) -> Link | None:
    """Steps 1–6 of SHP-50 in order; None when none of them finds a visitor."""
    account_id = str(installation.account_id)
    visitor = _cart_attribute(body)
    if visitor is not None:
        return Link("cart_attribute", visitor)
    if order.checkout_token:
        link = db.scalars(sa.select(ShopifyCheckoutLink).where(
            ShopifyCheckoutLink.account_id == account_id, ShopifyCheckoutLink.installation_id == installation.id,
            ShopifyCheckoutLink.checkout_token == order.checkout_token)).first()
        if link is not None:
            return Link("pixel_checkout_token", link.visitor_id, link.is_first_order)
    link = db.scalars(sa.select(ShopifyCheckoutLink).where(
        ShopifyCheckoutLink.account_id == account_id, ShopifyCheckoutLink.installation_id == installation.id,
        ShopifyCheckoutLink.order_id == order.order_id).order_by(ShopifyCheckoutLink.first_seen_at)).first()
    if link is not None:
        return Link("pixel_order_id", link.visitor_id, link.is_first_order)
    held = next((h for h in sgtm_links(db, order) if h.visitor_id is not None), None)
    if held is not None:
        return Link("sgtm_transaction", held.visitor_id)
    lookback = load_config(db, account_id).attribution.lookback_days
    if order.customer_id:
        users = sa.select(User.id).where(User.account_id == account_id, User.environment == order.environment,
                                         User.user_key == f"shopify:{order.customer_id}")
        visitor = _identity_visitor(db, account_id, order.environment, users, converted_at, lookback)
        if visitor is not None:
            return Link("customer_identity", visitor)
    if order.email_sha256:
        users = sa.select(User.id).where(User.account_id == account_id, User.environment == order.environment,
                                         User.email_sha256 == order.email_sha256)
        visitor = _identity_visitor(db, account_id, order.environment, users, converted_at, lookback)
        if visitor is not None:
            return Link("email_identity", visitor)
    return None
