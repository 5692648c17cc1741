"""Pure mapping of an order payload to conversion, identify and adjustment fields (shopify.md §8, §11, §12).

Nothing here touches storage: the linking chain decides the visitor and the method, these functions only read
the payload. What is never copied matters as much as what is: no e-mail, IP, user agent, name, phone or
address leaves this module (SHP-3, SHP-41).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from connectors.shopify.envelopes import email_hash, rfc3339, shopify_id, source_time
from connectors.shopify.money import OrderAmounts, quantize, refund_amount, shop_money

__all__ = ["OFFLINE_SOURCES", "cancel_adjustment", "conversion_properties", "customer_traits", "is_web_order",
           "order_class", "order_identifier", "refund_adjustments"]

OFFLINE_SOURCES = ("pos", "shopify_draft_order")


def order_class(body: dict[str, Any]) -> str:
    """`offline` (SHP-47), `subscription` (SHP-48) or `web` (everything the linking chain runs for)."""
    source = str(body.get("source_name") or "")
    if source in OFFLINE_SOURCES:
        return "offline"
    if source.startswith("subscription_contract"):
        return "subscription"
    return "web"


def is_web_order(body: dict[str, Any]) -> bool:
    """SHP-51: parking applies to storefront orders (source `web` or a checkout token)."""
    return body.get("source_name") == "web" or bool(body.get("checkout_token"))


def customer_traits(customer: dict[str, Any]) -> dict[str, Any]:
    """SHP-42: the traits of an order's or a customer payload's customer; nothing identifying."""
    traits: dict[str, Any] = {"shopify_customer_id": shopify_id(customer.get("id"))}
    if customer.get("state") is not None:
        traits["state"] = customer["state"]
    if customer.get("verified_email") is not None:
        traits["verified_email"] = bool(customer["verified_email"])
    consent = customer.get("email_marketing_consent")
    if isinstance(consent, dict) and consent.get("state"):
        traits["email_marketing_state"] = consent["state"]
    created = source_time(customer.get("created_at"))
    if created is not None:
        traits["customer_created_at"] = rfc3339(created)
    tags = customer.get("tags")
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    if isinstance(tags, list) and tags:
        traits["tags"] = [str(t) for t in tags]
    return traits


def order_identifier(body: dict[str, Any]) -> dict[str, str] | None:
    customer = body.get("customer") if isinstance(body.get("customer"), dict) else {}
    digest = email_hash((customer or {}).get("email"), body.get("email"))
    return {"email_sha256": digest} if digest else None


def _landing_url(body: dict[str, Any], primary_domain: str | None) -> str | None:
    landing = body.get("landing_site")
    if not isinstance(landing, str) or not landing:
        return None
    if landing.startswith("/"):
        return f"https://{primary_domain}{landing}" if primary_domain else None
    return landing


def conversion_properties(body: dict[str, Any], amounts: OrderAmounts, basis: str, currency: str,
                          presentment_currency: str, method: str, primary_domain: str | None,
                          api_version: str | None) -> dict[str, Any]:
    """SHP-41: exactly these keys, each omitted when its source is null or empty."""
    codes = [str(c.get("code")) for c in body.get("discount_codes") or [] if isinstance(c, dict) and c.get("code")]
    gateways = body.get("payment_gateway_names") or []
    subtotal = amounts.subtotal
    presentment_revenue = amounts.presentment_total if basis == "total" else (
        amounts.subtotal / amounts.ratio if amounts.ratio else amounts.subtotal)

    def money(*fields: str) -> str | None:
        value = shop_money(body, *fields)
        return None if value is None else quantize(value, currency)

    order_number = body.get("order_number")
    props: dict[str, Any] = {
        "url": _landing_url(body, primary_domain),
        "referrer": body.get("referring_site") or None,
        "shopify_order_id": shopify_id(body.get("id")),
        "order_name": body.get("name") or None,
        "order_number": int(order_number) if isinstance(order_number, int | str) and str(order_number).isdigit()
        else None,
        "checkout_token": body.get("checkout_token") or None,
        "source_name": body.get("source_name") or None,
        "app_id": shopify_id(body.get("app_id")),
        "financial_status": body.get("financial_status") or None,
        "discount_codes": ",".join(codes) or None,
        "subtotal": quantize(subtotal, currency),
        "tax": money("current_total_tax", "total_tax"),
        "shipping": money("total_shipping_price"),
        "discounts": money("total_discounts"),
        "line_item_count": len(body["line_items"]) if isinstance(body.get("line_items"), list) else None,
        "gateway": str(gateways[0]) if isinstance(gateways, list) and gateways else None,
        "attribution_method": method,
        "presentment_revenue": quantize(presentment_revenue, presentment_currency),
        "presentment_currency": presentment_currency,
        "revenue_basis": basis,
        "shopify_api_version": api_version or None,
    }
    if body.get("current_subtotal_price") is None and body.get("subtotal_price") is None and \
            "current_subtotal_price_set" not in body and "subtotal_price_set" not in body:
        props["subtotal"] = None
    return {key: value for key, value in props.items() if value is not None and value != ""}


def refund_adjustments(refunds: list[Any], key_prefix: str, conversion_key: str, basis: str, currency: str,
                       presentment_currency: str, ratio: Decimal) -> list[dict[str, Any]]:
    """SHP-60/63/64/65: one refund adjustment per refund, keyed by the refund id (same key on every topic)."""
    out = []
    for refund in refunds:
        if not isinstance(refund, dict) or shopify_id(refund.get("id")) is None:
            continue
        refund_id = str(shopify_id(refund.get("id")))
        amount = refund_amount(refund, basis, currency, presentment_currency, ratio)
        at = source_time(refund.get("processed_at")) or source_time(refund.get("created_at"))
        out.append({"kind": "order_adjustment", "idempotency_key": f"{key_prefix}:refund:{refund_id}",
                    "conversion_key": conversion_key, "adjustment": "refund",
                    "amount": quantize(amount.amount, currency), "currency": currency,
                    "occurred_at": rfc3339(at) if at else None,
                    "properties": amount.properties(refund_id, basis, presentment_currency, ratio)})
    return out


def cancel_adjustment(body: dict[str, Any], conversion_key: str, currency: str) -> dict[str, Any] | None:
    """SHP-66: a cancel never subtracts money itself (the refunds do), so the two never double-count."""
    at = source_time(body.get("cancelled_at"))
    if at is None:
        return None
    props = {"cancel_reason": body["cancel_reason"]} if body.get("cancel_reason") else {}
    return {"kind": "order_adjustment", "idempotency_key": f"{conversion_key}:cancel", "conversion_key": conversion_key,
            "adjustment": "cancel", "currency": currency, "occurred_at": rfc3339(at), "properties": props}
