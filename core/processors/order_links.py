"""sGTM purchases held against Shopify orders (sgtm.md SGTM-30..SGTM-32).

When an account sells through Shopify, its Shopify webhooks are the revenue source and a purchase tag fired on
the thank-you page is the same sale seen a second time. The purchase is therefore stored as a link: if the order
is already known the link merges into it at once (its visitor may still help a parked order find its journey);
otherwise it waits until ``hold_until``, and only then, if no order claimed it, becomes a conversion of its own
(:mod:`core.order_holds`). A Shopify order that arrives even later still wins (the connector cancels the sGTM
conversion, SGTM-32), so there is never more than one active conversion per order.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.commands import CommandResult, OrderLinkCommand
from core.ids import new_id
from core.processors.context import Ctx, insert_ignore
from core.storage.models import SgtmOrderLink, ShopifyOrder

__all__ = ["MATCH_WINDOW", "link_answer", "merge_into_order", "process_order_link"]

MATCH_WINDOW = timedelta(hours=24)  # SGTM-31 / SHP-50 step 4: the order's processed_at within 24 h


def matching_order(db: Session, link: SgtmOrderLink) -> ShopifyOrder | None:
    """SGTM-31: the tenant's order whose id, name (with or without `#`) or confirmation number is the link's
    transaction id, processed within 24 h of the purchase."""
    transaction_id, occurred_at = link.transaction_id, link.occurred_at
    names = [transaction_id, transaction_id.removeprefix("#"), "#" + transaction_id.removeprefix("#")]
    return db.scalars(sa.select(ShopifyOrder).where(
        ShopifyOrder.account_id == link.account_id, ShopifyOrder.environment == link.environment,
        sa.or_(ShopifyOrder.order_id == transaction_id, ShopifyOrder.name.in_(names),
               ShopifyOrder.confirmation_number == transaction_id),
        ShopifyOrder.processed_at >= occurred_at - MATCH_WINDOW,
        ShopifyOrder.processed_at <= occurred_at + MATCH_WINDOW,
    ).order_by(ShopifyOrder.processed_at).with_for_update()).first()


def link_answer(link: SgtmOrderLink) -> dict[str, object]:
    """SGTM-34: what the sGTM answer reports for a stored link."""
    if link.status == "pending":
        return {"status": "held"}
    if link.status == "converted":
        return {"status": "converted", "conversion_key": link.idempotency_key}
    return {"status": "merged", "merged_into": link.merged_into, "duplicate": True}


def process_order_link(ctx: Ctx, cmd: OrderLinkCommand) -> CommandResult:
    link_id = new_id("sol", cmd.received_at)
    stored = insert_ignore(ctx.db, SgtmOrderLink, {
        "account_id": ctx.account_id, "id": link_id, "environment": ctx.environment,
        "transaction_id": cmd.transaction_id, "idempotency_key": cmd.idempotency_key,
        "visitor_id": cmd.visitor_key, "ga_client_id": cmd.ga_client_id, "occurred_at": cmd.occurred_at,
        "hold_until": cmd.hold_until, "status": "pending", "merged_into": None, "data": cmd.conversion,
        "created_at": cmd.received_at, "updated_at": cmd.received_at,
    })
    link = ctx.db.scalars(sa.select(SgtmOrderLink).where(
        ctx.scoped(SgtmOrderLink), SgtmOrderLink.transaction_id == cmd.transaction_id).with_for_update()).one()
    if not stored:  # a reloaded thank-you page: the same purchase again (SGTM-33)
        return CommandResult(command_id=cmd.id, status="duplicate", result_id=link.id,
                             body={**link_answer(link), "duplicate": True})
    order = merge_into_order(ctx.db, link, cmd.received_at)
    body: dict[str, object] = {}
    if order is not None and order.status == "parked":  # SHP-52: its chain runs again now a visitor is known
        order.next_attempt_at = cmd.received_at
        body["parked_order"] = order.id
    return CommandResult(command_id=cmd.id, result_id=link.id, body={**link_answer(link), **body})


def merge_into_order(db: Session, link: SgtmOrderLink, now: datetime) -> ShopifyOrder | None:
    """A link whose order is known is `merged` into it, whatever the order's state; None when no order is."""
    order = matching_order(db, link)
    if order is not None:
        link.status, link.merged_into, link.updated_at = "merged", order.conversion_key, now
    return order
