"""`customers/create` and `customers/update` (shopify.md SHP-67, SHP-38): one traits-only identify.

A customer payload carries no visitor information, so none is guessed; the identify only refreshes the
identity's traits and e-mail hash. Shopify may deliver updates out of order: one not newer than the last
seen `updated_at` emits nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from connectors.shopify.envelopes import email_hash, envelope, rfc3339, shopify_id, source_time
from connectors.shopify.models import ShopifyCustomer
from connectors.shopify.money import OrderError
from connectors.shopify.order_fields import customer_traits
from connectors.shopify.orders import Outcome
from core.storage.models import Installation

__all__ = ["customer_delivery"]


def customer_delivery(db: Session, installation: Installation, body: dict[str, Any]) -> Outcome:
    customer_id = shopify_id(body.get("id"))
    updated = source_time(body.get("updated_at")) or source_time(body.get("created_at"))
    if customer_id is None or updated is None:
        raise OrderError("id and updated_at: required in a customer payload")
    account_id = str(installation.account_id)
    seen = db.get(ShopifyCustomer, (account_id, installation.id, customer_id))
    if seen is not None and updated <= seen.updated_at_source:
        return Outcome(status="ignored", error="stale_update")
    if seen is None:
        db.add(ShopifyCustomer(account_id=account_id, installation_id=installation.id, customer_id=customer_id,
                               environment=installation.environment, updated_at_source=updated))
    else:
        seen.updated_at_source = updated
    digest = email_hash(body.get("email"))
    return Outcome(commands=[envelope(
        "identify", account_id, installation.environment, installation.id,
        f"shopify:{installation.id}:customer:{customer_id}:{rfc3339(updated)}",
        occurred_at=rfc3339(updated), user_id=f"shopify:{customer_id}",
        identifier={"email_sha256": digest} if digest else None, traits=customer_traits(body))])


