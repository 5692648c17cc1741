"""`POST /shopify/pixel/v1/events` (shopify.md §13): the Web Pixel's batches, from the shopper's browser.

This is the only route with CORS, and the only one a browser calls, so the request's client address is the
visitor's (masked into a fingerprint here, never stored). The publishable key can do one thing: append pixel
events and sessions. Whatever a batch says, it never creates a conversion, an identify, revenue or a user
link (Q-44); checkout events only record which visitor owned a checkout, for the order linking chain.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connectors.shopify.envelopes import WEB_PIXEL, envelope, gid_tail, rfc3339, shop_domain, source_time
from connectors.shopify.models import ShopifyCheckoutLink
from connectors.shopify.money import decimal_of, quantize
from connectors.shopify.pixel_keys import PIXEL_KEY, active_pixel_key
from connectors.shopify.topics import append_commands
from core.fingerprint import clean_user_agent, fingerprint, mask_ip
from core.ids import new_id
from core.money import MAX_REVENUE
from core.numbers import stored_int
from core.storage.models import Installation, ShopifyOrder, VisitorAlias
from edge.http import client_ip, json_response
from edge.limits import address_key
from edge.services import app_services

__all__ = ["EVENT_TYPES", "bp", "pixel_key_for_limits"]

bp = Blueprint("shopify_pixel", __name__, url_prefix="/shopify/pixel/v1")

MAX_BODY = 64 * 1024
MAX_EVENTS = 20
MAX_DATA = 16 * 1024
STALE = timedelta(hours=72)
AHEAD = timedelta(minutes=5)
VISITOR_ID = re.compile(r"[0-9a-f]{64}")
CLIENT_ID = re.compile(r"[A-Za-z0-9-]{1,100}")
EVENT_ID = re.compile(r"sh-[A-Za-z0-9-]{1,100}")
_KEY_IN_BODY = re.compile(rb'"ingest_key"\s*:\s*"([^"]{1,64})"')

CHECKOUT_EVENTS = ("checkout_started", "checkout_contact_info_submitted", "checkout_address_info_submitted",
                   "checkout_shipping_info_submitted", "payment_info_submitted", "checkout_completed")
# SHP-75: pixel event name -> event_type, and the properties each keeps (money ones become decimal strings).
PRODUCT = ("product_id", "variant_id", "sku", "product_title", "price", "currency")
EVENT_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "page_viewed": ("page_view", ("title",)),
    "product_viewed": ("product_viewed", PRODUCT),
    "collection_viewed": ("collection_viewed", ("collection_id", "collection_title")),
    "search_submitted": ("search_submitted", ("search_term",)),
    "product_added_to_cart": ("add_to_cart", (*PRODUCT, "quantity", "line_total")),
    "product_removed_from_cart": ("remove_from_cart", (*PRODUCT, "quantity", "line_total")),
    "cart_viewed": ("cart_viewed", ("cart_total", "currency", "line_count")),
    **{name: (name, ("checkout_token", "checkout_total", "currency", "line_count")) for name in CHECKOUT_EVENTS[:-1]},
    "checkout_completed": ("checkout_completed", ("checkout_token", "order_id", "checkout_total", "currency",
                                                  "line_count", "is_first_order")),
}
MONEY = frozenset({"price", "line_total", "cart_total", "checkout_total"})
TAILED = frozenset({"product_id", "variant_id", "collection_id", "order_id"})  # GIDs reduced to the number


def _answer(body: dict[str, Any], status: int) -> Response:
    resp = json_response(body, status)
    resp.headers["Access-Control-Allow-Origin"] = "*"  # SHP-68: every answer, errors included
    return resp


def limit_pixel(app: Flask, limiter: Any, settings: Any) -> None:
    """SHP-71: per pixel key and per shopper IP (the pixel is called by browsers, so an address is a keyed digest:
    edge.limits.address_key); a CORS preflight is never counted."""
    view = limiter.limit(lambda: settings.ratelimit_pixel_key, key_func=pixel_key_for_limits)(
        app.view_functions["shopify_pixel.events"])
    by_ip = limiter.limit(lambda: settings.ratelimit_pixel_ip,
                          key_func=lambda: address_key(settings.secret_key, "ip", client_ip()),
                          exempt_when=lambda: request.method == "OPTIONS")
    app.view_functions["shopify_pixel.events"] = by_ip(view)


def pixel_key_for_limits() -> str:
    """Flask-Limiter key (SHP-71): the batch's ingest key, read without parsing the whole body."""
    found = _KEY_IN_BODY.search(request.get_data(cache=True)[:MAX_BODY])
    token = found.group(1).decode(errors="replace") if found else ""
    return "px:" + hashlib.sha256(token.encode()).hexdigest()


@bp.route("/events", methods=["OPTIONS"])
def preflight() -> Response:
    resp = Response(status=204)
    resp.headers.update({"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, OPTIONS",
                         "Access-Control-Allow-Headers": "Content-Type", "Access-Control-Max-Age": "86400"})
    return resp


def _properties(name: str, data: dict[str, Any], currency: str | None) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for field in EVENT_TYPES[name][1]:
        value = data.get(field)
        if value is None or value == "":
            continue
        if field in MONEY:
            amount = decimal_of(value)
            if amount is None or abs(amount) > MAX_REVENUE:  # beyond any amount, dropped like a non-number
                continue
            value = quantize(amount, str(data.get("currency") or currency or "USD").upper())
        elif field in TAILED:
            value = gid_tail(value)
        elif field == "is_first_order":
            value = bool(value)
        elif field in ("quantity", "line_count"):
            value = stored_int(value) if isinstance(value, int | Decimal) else None  # i64 or dropped
        elif not isinstance(value, str):
            value = str(value)
        if value is not None:
            props[field] = value
    return props


def _rejection(event: Any, now: datetime) -> str | None:
    """SHP-74: why one event is refused, or None."""
    if not isinstance(event, dict) or event.get("name") not in EVENT_TYPES:
        return "unknown_event"
    if not isinstance(event.get("id"), str) or EVENT_ID.fullmatch(event["id"]) is None:
        return "invalid_id"
    at = source_time(event.get("timestamp"))
    if at is None:
        return "invalid_timestamp"
    if at < now - STALE:
        return "stale"
    if at > now + AHEAD:
        return "future"
    url = event.get("url")
    if not isinstance(url, str) or not re.match(r"https?://", url) or len(url) > 2048:
        return "invalid_url"
    data = event.get("data") if event.get("data") is not None else {}
    if not isinstance(data, dict) or len(json.dumps(data, default=str)) > MAX_DATA:
        return "data_too_large"
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _visitor(db: Session, installation: Installation, body: dict[str, Any], now: datetime) -> str:
    """SHP-73: the alias of the Shopify client id wins; else the sent visitor id; else one derived from both."""
    client_id = _text(body.get("shopify_client_id"))
    sent = _text(body.get("visitor_id"))
    sent = sent if sent and VISITOR_ID.fullmatch(sent) else None
    if client_id is None or CLIENT_ID.fullmatch(client_id) is None:
        assert sent is not None
        return sent
    namespace = f"shopify_client:{installation.id}"
    account_id = str(installation.account_id)

    def known() -> str | None:
        return db.scalar(sa.select(VisitorAlias.visitor_key).where(
            VisitorAlias.account_id == account_id, VisitorAlias.environment == installation.environment,
            VisitorAlias.namespace == namespace, VisitorAlias.alias == client_id))

    found = known()
    if found is not None:
        return found
    chosen = sent or hashlib.sha256(f"shopify:{installation.shop_domain}:{client_id}".encode()).hexdigest()
    try:
        with db.begin_nested():
            db.add(VisitorAlias(account_id=account_id, environment=installation.environment, namespace=namespace,
                                alias=client_id, visitor_key=chosen, created_at=now))
    except IntegrityError:  # another batch created it first: the first writer wins
        return known() or chosen
    return chosen


def _link_checkouts(db: Session, installation: Installation, events: list[dict[str, Any]], visitor: str,
                    client_id: str | None, now: datetime) -> list[tuple[str, str]]:
    """SHP-76: the first visitor of a checkout token wins; returns parked orders the links now match."""
    account_id = str(installation.account_id)
    touched_tokens, touched_orders = set(), set()
    for event in events:
        data = event.get("data") or {}
        token = data.get("checkout_token")
        if event["name"] not in CHECKOUT_EVENTS or not isinstance(token, str) or not token:
            continue
        at = source_time(event["timestamp"])
        assert at is not None
        link = db.scalars(sa.select(ShopifyCheckoutLink).where(
            ShopifyCheckoutLink.account_id == account_id, ShopifyCheckoutLink.installation_id == installation.id,
            ShopifyCheckoutLink.checkout_token == token[:255]).with_for_update()).first()
        if link is None:
            link = ShopifyCheckoutLink(
                account_id=account_id, id=new_id("chk", at), environment=installation.environment,
                installation_id=installation.id, checkout_token=token[:255], visitor_id=visitor,
                shopify_client_id=client_id, first_seen_at=at, last_seen_at=at)
            db.add(link)
        link.first_seen_at, link.last_seen_at = min(link.first_seen_at, at), max(link.last_seen_at, at)
        if event["name"] == "checkout_completed":
            order_id = gid_tail(data.get("order_id"))
            if order_id:
                link.order_id = order_id[:32]
                touched_orders.add(link.order_id)
            if data.get("is_first_order") is not None:
                link.is_first_order = bool(data["is_first_order"])
        touched_tokens.add(link.checkout_token)
        db.flush()
    if not touched_tokens and not touched_orders:
        return []
    return [(r.account_id, r.id) for r in db.scalars(sa.select(ShopifyOrder).where(
        ShopifyOrder.account_id == account_id, ShopifyOrder.installation_id == installation.id,
        ShopifyOrder.status == "parked",
        sa.or_(ShopifyOrder.checkout_token.in_(touched_tokens), ShopifyOrder.order_id.in_(touched_orders))))]


@bp.route("/events", methods=["POST"])
def events() -> Response:
    raw = request.get_data(cache=True)
    if len(raw) > MAX_BODY:
        return _answer({"error": "payload_too_large"}, 413)
    mimetype = request.mimetype or ""
    if mimetype not in ("text/plain", "application/json"):
        return _answer({"error": "unsupported_media_type"}, 415)
    try:
        body = json.loads(raw, parse_float=Decimal)
    except (ValueError, RecursionError):
        return _answer({"error": "invalid_json"}, 400)
    if not isinstance(body, dict):
        return _answer({"error": "invalid_json"}, 400)
    if body.get("v") != 1 or isinstance(body.get("v"), bool):
        return _answer({"error": "unsupported_version"}, 400)
    batch = body.get("events")
    if not isinstance(batch, list) or not 1 <= len(batch) <= MAX_EVENTS:
        return _answer({"error": "invalid_events"}, 400)
    visitor_sent = isinstance(body.get("visitor_id"), str) and VISITOR_ID.fullmatch(body["visitor_id"])
    client_sent = isinstance(body.get("shopify_client_id"), str) and CLIENT_ID.fullmatch(body["shopify_client_id"])
    if not visitor_sent and not client_sent:
        return _answer({"error": "missing_visitor"}, 400)
    services = app_services()
    now = services.now()
    token = _text(body.get("ingest_key")) or ""
    if PIXEL_KEY.fullmatch(token) is None:
        return _answer({"error": "invalid_ingest_key"}, 401)
    consent = _object(body.get("consent"))
    with services.sessions.begin() as db:
        key = active_pixel_key(db, token, now)
        installation = db.get(Installation, key.installation_id) if key and key.installation_id else None
        if (installation is None or installation.status != "active" or installation.account_id is None
                or installation.shop_domain != shop_domain(str(body.get("shop_domain") or ""))
                or installation.account_id != body.get("account_id")):
            return _answer({"error": "invalid_ingest_key"}, 401)
        if consent.get("analytics") is not True:  # SHP-72: nothing appended, stored or created
            return _answer({"accepted": 0, "rejected": [{"index": i, "reason": "consent"}
                                                        for i in range(len(batch))]}, 202)
        rejected = [{"index": i, "reason": reason} for i, e in enumerate(batch)
                    if (reason := _rejection(e, now)) is not None]
        refused = {r["index"] for r in rejected}
        accepted = [e for i, e in enumerate(batch) if i not in refused]
        visitor = _visitor(db, installation, body, now)
        client_id = body.get("shopify_client_id") if client_sent else None
        matched = _link_checkouts(db, installation, accepted, visitor, client_id, now) if accepted else []
        installation.pixel_last_seen_at = now
        commands = _commands(installation, accepted, visitor)
    if commands:
        append_commands(services, commands, now)
    from connectors.shopify.sweep import rerun_order

    for account_id, row_id in matched:  # SHP-52: a parked order this batch can now link runs at once
        rerun_order(services, account_id, row_id)
    return _answer({"accepted": len(accepted), "rejected": rejected, "visitor_id": visitor}, 202)


def _commands(installation: Installation, accepted: list[dict[str, Any]], visitor: str) -> list[dict[str, Any]]:
    """SHP-75: a session for each page view, and one event per accepted pixel event."""
    user_agent = clean_user_agent(request.headers.get("User-Agent"))
    device = fingerprint(mask_ip(client_ip(), []), user_agent)
    account_id, environment = str(installation.account_id), installation.environment
    out: list[dict[str, Any]] = []
    for event in accepted:
        name, key = event["name"], f"shopify_pixel:{installation.id}:{event['id']}"
        at = source_time(event["timestamp"])
        assert at is not None, "accepted events have a valid timestamp"
        # Normalized to UTC: a timestamp sent without an offset is read as UTC, never as a naive time.
        common = {"visitor_id": visitor, "occurred_at": rfc3339(at), "url": event["url"],
                  "referrer": event.get("referrer") or None, "user_agent": user_agent, "device_fingerprint": device}
        if name == "page_viewed":
            out.append(envelope("session", account_id, environment, installation.id, f"{key}:session",
                                source=WEB_PIXEL, **common))
        data = _object(event.get("data"))
        props = _properties(name, data, installation.currency)
        if name == "page_viewed" and isinstance(event.get("title"), str) and event["title"]:
            props["title"] = event["title"][:1000]
        out.append(envelope("event", account_id, environment, installation.id, key, source=WEB_PIXEL,
                            event_type=EVENT_TYPES[name][0], properties=props, **common))
    return out
