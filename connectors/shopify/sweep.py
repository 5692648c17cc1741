"""Retries of parked orders and waiting refunds (shopify.md SHP-51, SHP-52, SHP-54, SHP-55, SHP-62), and the
release of held sGTM purchases (sgtm.md SGTM-31), which only exist on accounts with a Shopify installation.

The order row is the source of truth: a delayed RQ job only names the row and the attempt it was scheduled
for, and does nothing if the row moved on. The sweep runs whatever is due, so retries also happen without
Redis (inline mode, at the start of `/shopify/*` requests) and after a worker outage.
"""

from __future__ import annotations

import logging
from functools import partial

import sqlalchemy as sa

from connectors.shopify.journey import fetch_journey
from connectors.shopify.models import ShopifyWebhookDelivery
from connectors.shopify.orders import order_delivery
from connectors.shopify.queue import worker_services
from core.order_holds import release_due_holds
from core.storage.models import Installation, ShopifyOrder
from core.storage.tenancy import all_tenants
from edge.services import AppServices

__all__ = ["order_retry_job", "rerun_order", "run_waiting_refunds", "sweep_due"]

log = logging.getLogger("mbuzz.shopify")


def rerun_order(services: AppServices, account_id: str, row_id: str, final: bool = False,
                attempts: int | None = None) -> bool:
    """Run the linking chain again for a parked order (from its stored paid payload); False if not parked."""
    from connectors.shopify.topics import after_outcome, read_body, settle

    now = services.now()
    with services.sessions() as db:
        row = db.get(ShopifyOrder, (account_id, row_id), with_for_update=True)
        if row is None or row.status != "parked" or (attempts is not None and row.attempts != attempts):
            return False
        installation = db.get(Installation, row.installation_id)
        delivery = db.get(ShopifyWebhookDelivery, (row.linking or {}).get("paid_delivery"))
        if installation is None or delivery is None or delivery.body_enc is None:
            log.warning("parked order %s has no stored payload; left parked", row_id)
            return False
        outcome = order_delivery(db, installation, "orders/paid", read_body(services, delivery),
                                 delivery.api_version, delivery.id, now, retry=True, final=final,
                                 journey=partial(fetch_journey, services))
        settle(services, db, outcome, now)
        db.commit()
    after_outcome(services, outcome)
    return True


def order_retry_job(account_id: str, row_id: str, attempts: int) -> None:
    """RQ job (delayed with `enqueue_in`): the retry scheduled for `attempts`, if the row still waits for it."""
    rerun_order(worker_services(), account_id, row_id, attempts=attempts)


def run_waiting_refunds(services: AppServices, shop_domain: str, order_id: str) -> None:
    """SHP-62: refunds that arrived before their order run as soon as an order delivery creates the row."""
    from connectors.shopify.topics import process_delivery

    with services.sessions() as db:
        waiting = list(db.scalars(sa.select(ShopifyWebhookDelivery.id).where(
            ShopifyWebhookDelivery.shop_domain == shop_domain, ShopifyWebhookDelivery.order_id == order_id,
            ShopifyWebhookDelivery.status == "waiting_order").order_by(ShopifyWebhookDelivery.received_at)))
    for delivery_id in waiting:
        process_delivery(services, delivery_id)


def sweep_due(services: AppServices, limit: int = 500) -> int:
    """Every parked order, waiting refund and held sGTM purchase (SGTM-31) that is due; returns how many ran."""
    from connectors.shopify.topics import REFUND_WAITS, process_delivery

    now = services.now()
    with services.sessions() as db:
        due = list(db.execute(sa.select(ShopifyOrder.account_id, ShopifyOrder.id).where(
            ShopifyOrder.status == "parked", ShopifyOrder.next_attempt_at <= now)
            .order_by(ShopifyOrder.next_attempt_at).limit(limit)
            .execution_options(**all_tenants("every shop's due order retries"))))
        waiting = [d for d in db.scalars(sa.select(ShopifyWebhookDelivery).where(
            ShopifyWebhookDelivery.status == "waiting_order").order_by(ShopifyWebhookDelivery.received_at)
            .limit(limit))
            if d.received_at + REFUND_WAITS[min(max(d.attempts, 1), len(REFUND_WAITS)) - 1] <= now]
        waiting_ids = [d.id for d in waiting]
    for account_id, row_id in due:
        rerun_order(services, account_id, row_id)
    for delivery_id in waiting_ids:
        process_delivery(services, delivery_id)
    released = release_due_holds(services.sessions, services.log, now, limit)
    return len(due) + len(waiting_ids) + released
