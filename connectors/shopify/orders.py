"""Order topics to commands (shopify.md §8–§11): the order row's state machine decides what may be emitted.

Every order topic first upserts the `shopify_orders` row (SHP-57). Only `orders/paid` creates the
conversion, once (SHP-58); later deliveries may still emit adjustments, whose keys make repeats harmless. An
order whose visitor is not known yet is parked and retried (SHP-51), never dropped: the last attempt records
it unattributed. Row changes that follow emitted commands are applied only after the commands are durable,
so a crash in between re-emits (deduplicated by key) instead of losing the conversion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from connectors.shopify.envelopes import envelope, rfc3339, shopify_id, source_time, synthetic_visitor
from connectors.shopify.journey import journey_sessions
from connectors.shopify.linking import Link, chain_steps, sgtm_links
from connectors.shopify.money import OrderAmounts, OrderError, order_amounts, quantize
from connectors.shopify.order_fields import (
    cancel_adjustment,
    conversion_properties,
    customer_traits,
    is_web_order,
    order_class,
    order_identifier,
    refund_adjustments,
)
from connectors.shopify.settings import settings_of
from core.ids import new_id
from core.storage.models import Installation, SgtmOrderLink, ShopifyOrder

__all__ = ["FINAL_ATTEMPT", "Outcome", "RETRY_OFFSETS", "conversion_key", "order_delivery", "refund_delivery"]

Journey = Callable[[Installation, str], "dict[str, Any] | None"]  # (installation, order id) → summary or None
PARK_WINDOW = timedelta(minutes=60)
# SHP-51: the chain runs again at first_attempt_at + these offsets; the run at +60 min is final.
RETRY_OFFSETS = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10), timedelta(minutes=60))
FINAL_ATTEMPT = len(RETRY_OFFSETS) + 1


@dataclass
class Outcome:
    """What processing one delivery produced: commands to append, then what to record once they are durable."""

    commands: list[dict[str, Any]] = field(default_factory=list)
    status: str = "processed"
    error: str | None = None
    finish: list[Callable[[Session], None]] = field(default_factory=list)
    retry_order: tuple[str, str, int, datetime] | None = None  # (account, row id, attempts, when)
    order_created: tuple[str, str] | None = None  # (shop, order id): waiting refunds may now run (SHP-62)


def conversion_key(installation_id: str, order_id: str) -> str:
    return f"shopify:{installation_id}:order:{order_id}"


def _command(installation: Installation, environment: str, fields: dict[str, Any]) -> dict[str, Any]:
    fields = dict(fields)
    kind, key = fields.pop("kind"), fields.pop("idempotency_key")
    return envelope(kind, str(installation.account_id), environment, installation.id, key, **fields)


def _upsert_order(db: Session, installation: Installation, environment: str, body: dict[str, Any],
                  amounts: OrderAmounts, currency: str, presentment: str, now: datetime) -> tuple[ShopifyOrder, bool]:
    """SHP-57: identity fields and amounts, before anything else; True when the row is new."""
    order_id = str(shopify_id(body.get("id")))
    row = db.scalars(sa.select(ShopifyOrder).where(
        ShopifyOrder.account_id == installation.account_id, ShopifyOrder.installation_id == installation.id,
        ShopifyOrder.order_id == order_id).with_for_update()).first()
    created = row is None
    if row is None:
        row = ShopifyOrder(account_id=installation.account_id, id=new_id("sho", now), environment=environment,
                           installation_id=installation.id, order_id=order_id, status="seen", attempts=0,
                           conversion_key=conversion_key(installation.id, order_id), linking={}, created_at=now,
                           updated_at=now)
        db.add(row)
    customer = body.get("customer") if isinstance(body.get("customer"), dict) else {}
    identifier = order_identifier(body)
    number = body.get("order_number")
    row.order_gid = body.get("admin_graphql_api_id") or row.order_gid
    row.name = (str(body["name"])[:64] if body.get("name") else None) or row.name
    row.order_number = number if isinstance(number, int) and not isinstance(number, bool) else row.order_number
    row.confirmation_number = body.get("confirmation_number") or row.confirmation_number
    row.checkout_token = body.get("checkout_token") or row.checkout_token
    row.source_name = body.get("source_name") or row.source_name
    row.app_id = shopify_id(body.get("app_id")) or row.app_id
    row.test = body.get("test") is True
    row.customer_id = shopify_id((customer or {}).get("id")) or row.customer_id
    row.email_sha256 = (identifier or {}).get("email_sha256") or row.email_sha256
    row.processed_at = source_time(body.get("processed_at")) or source_time(body.get("created_at")) or row.processed_at
    row.shop_currency, row.presentment_currency = currency, presentment
    row.shop_total, row.shop_subtotal = quantize(amounts.total, currency), quantize(amounts.subtotal, currency)
    row.presentment_total = quantize(amounts.presentment_total, presentment)
    row.fx_ratio = format(amounts.ratio, "f")
    row.cancelled_at = source_time(body.get("cancelled_at")) or row.cancelled_at
    row.updated_at = now
    db.flush()
    return row, created


def _is_acquisition(db: Session, row: ShopifyOrder, link: Link | None, user_id: str | None) -> bool:
    """SHP-40: the checkout's first-order flag when known, else no earlier order of the same customer."""
    if link is not None and link.is_first_order is not None:
        return link.is_first_order
    if user_id is None or row.customer_id is None or row.processed_at is None:
        return False
    earlier = db.scalar(sa.select(sa.func.count()).select_from(ShopifyOrder).where(
        ShopifyOrder.account_id == row.account_id, ShopifyOrder.installation_id == row.installation_id,
        ShopifyOrder.environment == row.environment, ShopifyOrder.customer_id == row.customer_id,
        ShopifyOrder.order_id != row.order_id, ShopifyOrder.processed_at < row.processed_at,
        ShopifyOrder.status != "excluded"))
    return not earlier


def _stored_link(row: ShopifyOrder) -> Link | None:
    found = (row.linking or {}).get("create")
    return Link(found["method"], found["visitor_id"], found.get("is_first_order")) if found else None


def _park_or_final(row: ShopifyOrder, body: dict[str, Any], now: datetime,
                   final: bool) -> tuple[str, datetime | None]:
    """SHP-51: `park` (with the next run's time), or `final` when steps 7 and 8 must apply now."""
    if final:
        return "final", None
    if row.status == "parked":
        if row.attempts >= FINAL_ATTEMPT or row.first_attempt_at is None:
            return "final", None
        return "park", row.first_attempt_at + RETRY_OFFSETS[row.attempts - 1]
    processed = row.processed_at or now
    if is_web_order(body) and now - processed < PARK_WINDOW:
        return "park", now + RETRY_OFFSETS[0]
    return "final", None


def _conversion(db: Session, installation: Installation, row: ShopifyOrder, body: dict[str, Any],
                amounts: OrderAmounts, api_version: str | None, now: datetime, out: Outcome,
                final: bool, journey: Journey | None) -> bool:
    """Identify + conversion for a paid order, or park it; False when the order is parked or excluded."""
    settings = settings_of(installation)
    key = conversion_key(installation.id, row.order_id)
    kind = order_class(body)
    customer = body.get("customer") if isinstance(body.get("customer"), dict) else {}
    customer_id = shopify_id((customer or {}).get("id"))
    user_id = f"shopify:{customer_id}" if customer_id else None
    identifier = order_identifier(body)
    converted_at = source_time(body.get("processed_at")) or source_time(body.get("created_at")) or now
    link: Link | None = None
    identify = user_id is not None
    row.attempts += 1  # every run counts, whatever it decides (SHP-51)
    if kind == "offline":
        mode = settings["offline_orders"]
        if mode == "exclude":
            row.status = "excluded"
            return False
        method = "offline"
        if mode == "include_unattributed":
            user_id, identifier, identify = None, None, False
    elif kind == "subscription":
        method = "subscription_renewal"
    else:
        link = chain_steps(db, installation, row, body, converted_at) or _stored_link(row)
        if link is None:
            decision, next_at = _park_or_final(row, body, now, final)
            if decision == "park":
                if row.status != "parked":
                    row.status, row.attempts, row.first_attempt_at = "parked", 1, now
                row.next_attempt_at = next_at
                out.retry_order = (row.account_id, row.id, row.attempts, next_at) if next_at else None
                return False
        method = link.method if link is not None else "none"
    visitor = link.visitor_id if link is not None else None
    conversion_visitor = visitor if visitor is not None else (None if user_id else synthetic_visitor(key))
    if method == "none" and settings["journey_summary"] and journey is not None:  # step 7 (SHP-56)
        summary = journey(installation, row.order_id)
        visits = journey_sessions(summary, key, synthetic_visitor(key)) if summary else []
        if visits:
            method, conversion_visitor = "journey_summary", synthetic_visitor(key)
            out.commands.extend(_command(installation, row.environment, visit) for visit in visits)
    if identify and customer_id:
        out.commands.append(_command(installation, row.environment, {
            "kind": "identify", "idempotency_key": f"shopify:{installation.id}:identify:{customer_id}:order:"
                                                   f"{row.order_id}",
            "occurred_at": rfc3339(converted_at), "user_id": f"shopify:{customer_id}", "visitor_id": visitor,
            "identifier": order_identifier(body), "traits": customer_traits(customer or {})}))
    basis = settings["revenue_basis"]
    out.commands.append(_command(installation, row.environment, {
        "kind": "conversion", "idempotency_key": key, "conversion_type": "purchase",
        "converted_at": rfc3339(converted_at), "revenue": quantize(amounts.revenue(basis), str(row.shop_currency)),
        "currency": row.shop_currency, "visitor_id": conversion_visitor, "user_id": user_id,
        "identifier": identifier, "is_acquisition": _is_acquisition(db, row, link, user_id),
        "inherit_acquisition": kind == "subscription",
        "properties": conversion_properties(body, amounts, basis, str(row.shop_currency),
                                            str(row.presentment_currency), method, installation.primary_domain,
                                            api_version)}))
    _hand_over(db, installation, row, key, method, conversion_visitor, now, out)
    return True


def _hand_over(db: Session, installation: Installation, row: ShopifyOrder, key: str, method: str,
               visitor: str | None, now: datetime, out: Outcome) -> None:
    """After the order's conversion: sGTM purchases held for it step aside (SGTM-31/32), and the order row
    records how it was attributed once the commands are appended (``out.finish``)."""
    held_links = sgtm_links(db, row)
    for held in held_links:
        if held.status == "converted":  # SGTM-32: Shopify is the revenue source; the held purchase steps aside
            out.commands.append(_command(installation, row.environment, _superseded(held, key, now)))
    account_id, row_id = row.account_id, row.id
    link_ids = [(h.id, "superseded" if h.status in ("converted", "superseded") else "merged") for h in held_links]

    def converted(db: Session) -> None:
        order = db.get(ShopifyOrder, (account_id, row_id))
        if order is not None:
            order.status, order.attribution_method, order.visitor_id = "converted", method, visitor
            order.conversion_key, order.next_attempt_at, order.updated_at = key, None, now
        for link_id, status in link_ids:  # SGTM-31/32: the sGTM purchase is this order's conversion now
            held = db.get(SgtmOrderLink, (account_id, link_id))
            if held is not None:
                held.status, held.merged_into, held.updated_at = status, key, now

    out.finish.append(converted)


def _superseded(held: SgtmOrderLink, order_key: str, now: datetime) -> dict[str, Any]:
    """SGTM-32: the cancel of an sGTM conversion that was emitted before its Shopify order arrived."""
    return {"kind": "order_adjustment", "idempotency_key": f"{held.idempotency_key}:superseded",
            "conversion_key": held.idempotency_key, "adjustment": "cancel",
            "currency": (held.data or {}).get("currency"), "occurred_at": rfc3339(now),
            "properties": {"cancel_reason": "superseded_by_shopify", "superseded_by": order_key}}


def order_delivery(db: Session, installation: Installation, topic: str, body: dict[str, Any],
                   api_version: str | None, delivery_id: str, now: datetime, retry: bool = False,
                   final: bool = False, journey: Journey | None = None) -> Outcome:
    """`orders/paid`, `orders/create`, `orders/cancelled`; parked-order retries pass `retry` (and `final` for
    the last run, or an uninstall: SHP-55). `journey` fetches an order's journey summary (step 7, SHP-56)."""
    if shopify_id(body.get("id")) is None:
        raise OrderError("id: missing")
    currency = str(body.get("currency") or "").upper()
    if not currency:
        raise OrderError("currency: missing (a missing currency is never assumed)")
    presentment = str(body.get("presentment_currency") or currency).upper()
    environment = "test" if body.get("test") is True else installation.environment  # SHP-5, SHP-46
    amounts = order_amounts(body, currency, presentment)
    row, created = _upsert_order(db, installation, environment, body, amounts, currency, presentment, now)
    out = Outcome(order_created=(installation.shop_domain, row.order_id) if created else None)
    if topic == "orders/paid" and not retry and "paid_delivery" not in (row.linking or {}):
        row.linking = {**(row.linking or {}), "paid_delivery": delivery_id}
    if topic == "orders/create":  # SHP-59: bring linking forward, never emit, never park
        if row.status == "seen" and order_class(body) == "web" and "create" not in (row.linking or {}):
            found = chain_steps(db, installation, row, body, row.processed_at or now)
            if found is not None:
                row.linking = {**(row.linking or {}), "create": {
                    "method": found.method, "visitor_id": found.visitor_id, "is_first_order": found.is_first_order}}
        return out
    if row.test and settings_of(installation)["exclude_test_orders"]:
        out.status, out.error = "ignored", "test_order_excluded"
        return out
    key = conversion_key(installation.id, row.order_id)
    if topic == "orders/paid" and row.status in ("seen", "parked"):
        if not _conversion(db, installation, row, body, amounts, api_version, now, out, final, journey):
            return out
    elif topic == "orders/paid" and row.status == "excluded":
        return out
    basis = settings_of(installation)["revenue_basis"]
    for adjustment in refund_adjustments(body.get("refunds") or [], f"shopify:{installation.id}", key, basis,
                                         currency, presentment, amounts.ratio):
        out.commands.append(_command(installation, row.environment, adjustment))
    cancel = cancel_adjustment(body, key, currency)
    if cancel is not None:  # SHP-49/SHP-66: after the conversion and the refunds
        out.commands.append(_command(installation, row.environment, cancel))
    return out


def refund_delivery(db: Session, installation: Installation, body: dict[str, Any], now: datetime) -> Outcome:
    """`refunds/create` (SHP-62): needs the order row for its currency, ratio and environment."""
    order_id = shopify_id(body.get("order_id"))
    if order_id is None:
        raise OrderError("order_id: missing")
    row = db.scalars(sa.select(ShopifyOrder).where(
        ShopifyOrder.account_id == installation.account_id, ShopifyOrder.installation_id == installation.id,
        ShopifyOrder.order_id == order_id)).first()
    if row is None:
        return Outcome(status="waiting_order")
    key = conversion_key(installation.id, order_id)
    adjustments = refund_adjustments([body], f"shopify:{installation.id}", key,
                                     settings_of(installation)["revenue_basis"], str(row.shop_currency),
                                     str(row.presentment_currency), Decimal(row.fx_ratio or "1"))
    return Outcome(commands=[_command(installation, row.environment, a) for a in adjustments])
