"""`POST /shopify/webhooks` receipt (shopify.md SHP-32..SHP-36): verify, deduplicate, store, then answer.

The raw body is verified with HMAC-SHA256 under the app secret (and the previous one while it rotates),
compared in constant time, before anything is parsed or stored. A delivery is answered 200 only after its
ledger row, holding the encrypted body, is committed; duplicates (same webhook id, or same shop, topic and
event id) only count a redelivery. Topic processing runs after the commit: in an RQ job when Redis is
configured, in the request otherwise (SHP-36, SHP-37).

Headers are client text: werkzeug decodes their bytes as latin-1, so any of 0x00-0xFF can arrive. The signature
is compared as bytes (`querysign.body_hmac_valid`), so a hostile one is a 401, never a 500; the values stored
from a verified delivery's headers lose their NUL characters, which PostgreSQL text cannot hold (SHP-32-D1).

Only the body is signed, and in app mode one secret signs every shop's deliveries, so the signature does not say
which shop a body belongs to (SHP-33-D1). Where the body names its shop (`myshopify_domain` of `shop/update` and
`app/uninstalled`, `shop_domain` of the compliance topics) it must be the header's shop, which in manual mode is
the installation's: otherwise 401 `shop_mismatch` and nothing is stored. The deduplication key is the webhook id
within the shop the delivery was accepted for, so a copy sent under another shop's header, refused or ignored,
never makes the genuine delivery a "duplicate".
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, request
from sqlalchemy.exc import IntegrityError, OperationalError

from connectors.shopify.envelopes import shop_domain
from connectors.shopify.models import ShopifyWebhookDelivery
from connectors.shopify.querysign import body_hmac_valid, secrets_of
from connectors.shopify.sweep import sweep_due
from connectors.shopify.topics import COMPLIANCE, HANDLED, enqueue_delivery, process_delivery
from core.crypto import cipher
from core.ids import new_id
from core.storage.models import Installation
from edge.http import json_response
from edge.services import app_services

log = logging.getLogger("mbuzz.shopify")

bp = Blueprint("shopify_webhooks", __name__, url_prefix="/shopify")

MAX_BODY = 5 * 1024 * 1024


def _header(name: str, limit: int) -> str:
    """A header of a verified delivery as it is stored: NUL characters dropped (PostgreSQL text cannot hold
    them), surrounding whitespace stripped, cut to its column (a long header never refuses a delivery, SHP-32)."""
    return (request.headers.get(name) or "").replace("\x00", "").strip()[:limit]


# SHP-33-D1: where a topic's body names its own shop (SHP-98's fields; the compliance payloads). Order, refund and
# customer bodies name none: for them the header is the only claim of the shop.
SHOP_IN_BODY = {"shop/update": "myshopify_domain", "app/uninstalled": "myshopify_domain",
                "shop/redact": "shop_domain", "customers/redact": "shop_domain",
                "customers/data_request": "shop_domain"}


def _object(raw: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None (stored as received; the topic's processor reports it)."""
    try:
        body: Any = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def _shop_refusal(topic: str, body: dict[str, Any] | None, shop: str) -> Response | None:
    """SHP-33-D1: 401 when the body names a shop and it is not `shop` (the header's, and the installation's in
    manual mode). A body without the field, or a topic without one, is not refused: the header is the claim."""
    field = SHOP_IN_BODY.get(topic)
    if field is None or body is None or field not in body:
        return None
    claimed = body[field]
    if isinstance(claimed, str) and shop_domain(claimed) == shop:
        return None
    return json_response({"error": "shop_mismatch", "message": (
        f"{field} in the body must name the shop of the X-Shopify-Shop-Domain header and of its installation "
        f"({shop})")}, 401)


def _ids_of(topic: str, body: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """The customer and order ids a redaction may later look for (SHP-8), extracted at receipt."""
    if body is None:
        return None, None
    if topic.startswith("orders/"):
        customer = body.get("customer") or {}
        return (_id(customer.get("id")) if isinstance(customer, dict) else None), _id(body.get("id"))
    if topic.startswith("refunds/"):
        return None, _id(body.get("order_id"))
    if topic.startswith("customers/"):
        return _id(body.get("id")), None
    return None, None


def _id(value: object) -> str | None:
    """A Shopify numeric id as a string; anything else (or longer than the column) is not an id."""
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    return text if text and len(text) <= 32 else None


INLINE_SWEEP = 10  # SHP-54: due retries run per /shopify/* request when there is no worker


@bp.before_app_request
def _inline_sweep() -> None:
    """Without Redis there is no scheduler: each `/shopify/*` request first runs a few due retries."""
    services = app_services()
    if services.redis is None and request.path.startswith("/shopify/"):
        try:
            sweep_due(services, limit=INLINE_SWEEP)
        except Exception:  # a retry's failure is recorded on its row; it never fails this request
            log.exception("inline Shopify sweep failed")


@bp.route("/webhooks", methods=["POST"])
def receive() -> Response:
    """App mode: signed with the app secret (or the previous one during a rotation)."""
    raw = _raw_body()
    if isinstance(raw, Response):
        return raw
    given = request.headers.get("X-Shopify-Hmac-Sha256")
    if not given:
        return json_response({"error": "missing_hmac"}, 401)
    secrets = secrets_of(app_services().settings)
    if not secrets or not body_hmac_valid(raw, given, secrets):
        return json_response({"error": "invalid_hmac"}, 401)
    shop = shop_domain(request.headers.get("X-Shopify-Shop-Domain"))
    if shop is None:
        return json_response({"error": "invalid_shop_domain"}, 401)
    return _store(raw, shop, manual=False)


@bp.route("/webhooks/m/<token>", methods=["POST"])
def receive_manual(token: str) -> Response:
    """SHP-78: manual mode. The URL's connector token selects the installation (never the shop header); the
    body is signed with the signing key the merchant copied from their store's notification settings."""
    raw = _raw_body()
    if isinstance(raw, Response):
        return raw
    services = app_services()
    with services.sessions() as db:
        installation = db.scalars(sa.select(Installation).where(
            Installation.connector_token_sha256 == hashlib.sha256(token.encode()).hexdigest(),
            Installation.mode == "manual")).first()
        signing_key_enc = installation.manual_signing_key_enc if installation is not None else None
        installed_shop = installation.shop_domain if installation is not None else None
    given = request.headers.get("X-Shopify-Hmac-Sha256")
    if not given:
        return json_response({"error": "missing_hmac"}, 401)
    if not signing_key_enc:
        return json_response({"error": "unknown_connector"}, 401)
    signing_key = cipher(services.settings.encryption_keys, services.settings.secret_key).decrypt(
        signing_key_enc.encode()).decode()
    if not body_hmac_valid(raw, given, [signing_key]):
        return json_response({"error": "invalid_hmac"}, 401)
    if shop_domain(request.headers.get("X-Shopify-Shop-Domain")) != installed_shop:
        return json_response({"error": "shop_mismatch"}, 401)
    return _store(raw, str(installed_shop), manual=True)


def _raw_body() -> bytes | Response:
    declared = request.content_length
    if declared is not None and declared > MAX_BODY:
        return json_response({"error": "payload_too_large"}, 413)
    raw = request.get_data(cache=False)  # SHP-32: the raw bytes, never a parsed body first
    if len(raw) > MAX_BODY:
        return json_response({"error": "payload_too_large"}, 413)
    return raw


def _store(raw: bytes, shop: str, manual: bool) -> Response:
    """SHP-33..SHP-36 for a verified delivery: deduplicate, store the ledger row, answer, then process."""
    services = app_services()
    settings = services.settings
    topic = _header("X-Shopify-Topic", 64)
    if not topic:
        return json_response({"error": "missing_topic"}, 400)
    body = _object(raw)
    refusal = _shop_refusal(topic, body, shop)
    if refusal is not None:  # nothing stored: the webhook id stays free for the genuine delivery
        return refusal
    webhook_id = _header("X-Shopify-Webhook-Id", 255) or f"none:{hashlib.sha256(raw).hexdigest()}"  # SHP-8-D1
    event_id = _header("X-Shopify-Event-Id", 255) or None
    now = services.now()
    try:
        with services.sessions.begin() as db:
            original = db.scalars(sa.select(ShopifyWebhookDelivery).where(  # SHP-34 within the shop (SHP-33-D1)
                ShopifyWebhookDelivery.shop_domain == shop, sa.or_(
                    ShopifyWebhookDelivery.webhook_id == webhook_id,
                    sa.and_(ShopifyWebhookDelivery.topic == topic, ShopifyWebhookDelivery.event_id == event_id)
                    if event_id else sa.false(),
                )).with_for_update()).first()
            if original is not None:  # SHP-34
                original.redeliveries += 1
                return json_response({"status": "duplicate"})
            installation = db.scalars(sa.select(Installation).where(Installation.shop_domain == shop)).first()
            status, reason = _route(topic, installation, manual)
            customer_id, order_id = _ids_of(topic, body)
            delivery = ShopifyWebhookDelivery(
                id=new_id("whd", now), webhook_id=webhook_id, event_id=event_id, topic=topic, shop_domain=shop,
                api_version=_header("X-Shopify-API-Version", 16) or None,
                triggered_at=_header("X-Shopify-Triggered-At", 40) or None, received_at=now,
                body_sha256=hashlib.sha256(raw).hexdigest(),
                body_enc=None if reason == "unknown_topic" else
                cipher(settings.encryption_keys, settings.secret_key).encrypt(raw).decode(),
                customer_id=customer_id, order_id=order_id, status=status, error=reason,
            )
            db.add(delivery)
            delivery_id = delivery.id
    except IntegrityError:  # a concurrent copy of the same delivery won the insert
        return json_response({"status": "duplicate"})
    except OperationalError:  # SHP-36: Shopify retries; nothing was acknowledged
        log.warning("webhook ledger unavailable; answered 503 so that Shopify retries")
        return json_response({"error": "storage_unavailable"}, 503)
    if status == "ignored":
        return json_response({"status": "ignored", "reason": reason})
    if status == "stored" and not enqueue_delivery(services, delivery_id):
        process_delivery(services, delivery_id)  # inline mode: after the commit; a failure marks the row
    return json_response({"status": "accepted"})


def _route(topic: str, installation: Installation | None, manual: bool) -> tuple[str, str | None]:
    """SHP-35: the ledger status and reason of a verified delivery (SHP-78: no compliance topics in manual
    mode, where Shopify never sends them; the dashboard's customer deletion replaces them)."""
    if topic not in HANDLED and (topic not in COMPLIANCE or manual):
        return "ignored", "unknown_topic"
    if topic in COMPLIANCE:
        return "stored", None
    if installation is None:
        return "ignored", "unknown_shop"
    if installation.status == "uninstalled" and topic != "app/uninstalled":
        return "ignored", "uninstalled"
    if installation.status == "pending_connect":
        return "deferred", None
    return "stored", None
