"""The embedded page's JSON API (shopify.md SHP-28, SHP-29..SHP-31, SHP-81..SHP-83) and the SHP-6 rule.

Every `/shopify/api/*` request carries an App Bridge session token; the shop, and so the tenant, is taken
from its `dest` claim only, never from a parameter. Settings changes are audited per field with the token's
`sub` (the staff user) and apply to deliveries processed afterwards; nothing is recomputed (SHP-83).

SHP-6: while the app's client id or secret is unset, every `/shopify/*` route except the pixel endpoint and
the manual-mode webhooks (which do not need them) answers 404 `{"error": "shopify_not_configured"}`; the
check is an app-wide `before_request` hook registered by this blueprint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import wraps
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, g, request
from sqlalchemy.orm import Session

from connectors.shopify.config import shopify_settings
from connectors.shopify.install import (
    API_TOPICS,
    TOPIC_NAMES,
    ConnectRefused,
    connect_with_code,
    connect_with_new_account,
    connector_state,
    pcd_refused_topics,
    refused_topics,
    schedule_post_install,
)
from connectors.shopify.models import ShopifyDataRequest, ShopifyWebhookDelivery
from connectors.shopify.session_tokens import InvalidSessionToken, SessionClaims, authenticate, bearer_token
from connectors.shopify.settings import apply_settings, settings_of, validate_settings
from core.crypto import cipher
from core.storage.models import Installation, ShopifyOrder
from edge.http import json_response
from edge.services import AppServices, app_services

__all__ = ["METHODS", "bp", "status_of"]

log = logging.getLogger("mbuzz.shopify")

bp = Blueprint("shopify_embedded", __name__, url_prefix="/shopify/api")

# SHP-81: the coverage table's rows, in display order.
METHODS = ("cart_attribute", "pixel_checkout_token", "pixel_order_id", "sgtm_transaction", "customer_identity",
           "email_identity", "journey_summary", "offline", "subscription_renewal", "none")
_OPEN_WITHOUT_APP = ("/shopify/pixel/", "/shopify/webhooks/m/")
PCD_SAMPLE = 50


@bp.before_app_request
def _require_configuration() -> Response | None:
    """SHP-6: without the app's client id and secret the connector's app routes do not exist."""
    path = request.path
    if not (path == "/shopify" or path.startswith("/shopify/")) or path.startswith(_OPEN_WITHOUT_APP):
        return None
    settings = shopify_settings(app_services())
    if settings.shopify_api_key and settings.shopify_api_secret:
        return None
    return json_response({"error": "shopify_not_configured"}, 404)


def _services() -> AppServices:
    return app_services()


def session_required(view: Callable[..., Response]) -> Callable[..., Response]:
    """SHP-29..SHP-31: a valid session token of an installed shop, else 401 `invalid_session_token`."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        services = _services()
        try:
            with services.sessions() as db:
                claims, installation = authenticate(db, bearer_token(request.headers.get("Authorization")),
                                                    services.settings, services.now())
        except InvalidSessionToken:
            return json_response({"error": "invalid_session_token"}, 401, {"WWW-Authenticate": "Bearer"})
        g.shopify_claims, g.shopify_installation_id = claims, installation.id
        resp = view(*args, **kwargs)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    return wrapper


def _claims() -> SessionClaims:
    claims: SessionClaims = g.shopify_claims
    return claims


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _coverage(db: Session, installation: Installation, now: datetime, days: int) -> dict[str, dict[str, Any]]:
    """Paid (converted) non-test orders of the last `days` days by attribution method, with their shares."""
    counts = dict.fromkeys(METHODS, 0)
    if installation.account_id is not None:
        rows = db.execute(sa.select(ShopifyOrder.attribution_method, sa.func.count()).where(
            ShopifyOrder.account_id == installation.account_id, ShopifyOrder.installation_id == installation.id,
            ShopifyOrder.status == "converted", ShopifyOrder.test.is_(False),
            ShopifyOrder.processed_at >= now - timedelta(days=days),
        ).group_by(ShopifyOrder.attribution_method)).all()
        for method, count in rows:
            key = method if method in counts else "none"
            counts[key] += int(count)
    total = sum(counts.values())

    def share(count: int) -> str:
        if not total:
            return "0.0000"
        return str((Decimal(count) / Decimal(total)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN))

    return {method: {"count": count, "share": share(count)} for method, count in counts.items()}


def _pcd_warning(services: AppServices, db: Session, shop: str) -> bool:
    """SHP-81: among the last 50 order deliveries, one had a `customer.id` but no e-mail (protected customer
    data not granted). Only deliveries with a customer id and a body still stored are read."""
    box = cipher(services.settings.encryption_keys, services.settings.secret_key)
    recent = db.execute(sa.select(ShopifyWebhookDelivery.customer_id, ShopifyWebhookDelivery.body_enc).where(
        ShopifyWebhookDelivery.shop_domain == shop, ShopifyWebhookDelivery.topic.like("orders/%"),
    ).order_by(ShopifyWebhookDelivery.received_at.desc()).limit(PCD_SAMPLE)).all()
    for customer_id, body_enc in recent:
        if customer_id is None or body_enc is None:
            continue
        try:
            body = json.loads(box.decrypt(body_enc.encode()))
        except Exception:  # an unreadable body says nothing about e-mail access
            continue
        customer = body.get("customer") if isinstance(body, dict) else None
        if isinstance(customer, dict) and not (customer.get("email") or body.get("email")):
            return True
    return False


def status_of(services: AppServices, db: Session, installation: Installation) -> dict[str, Any]:
    """SHP-82's `GET /shopify/api/status` document."""
    now = services.now()
    registered = set(connector_state(installation).get("webhook_topics") or [])
    refused = refused_topics(installation)
    webhooks = []
    for topic in [TOPIC_NAMES[t] for t in API_TOPICS] + ["app/uninstalled"]:
        last = db.execute(sa.select(ShopifyWebhookDelivery.received_at, ShopifyWebhookDelivery.status).where(
            ShopifyWebhookDelivery.shop_domain == installation.shop_domain, ShopifyWebhookDelivery.topic == topic,
        ).order_by(ShopifyWebhookDelivery.received_at.desc()).limit(1)).first()
        webhooks.append({
            "topic": topic,
            "registered": topic == "app/uninstalled" or topic in registered,  # app/uninstalled: the app config
            "last_delivery_at": _iso(last[0]) if last else None,
            "last_status": last[1] if last else None,
            "refused": refused[topic]["reason"] if topic in refused else None,  # SHP-27: why it is not registered
        })
    parked = 0
    if installation.account_id is not None:
        parked = int(db.scalar(sa.select(sa.func.count()).select_from(ShopifyOrder).where(
            ShopifyOrder.account_id == installation.account_id, ShopifyOrder.installation_id == installation.id,
            ShopifyOrder.status == "parked")) or 0)
    return {
        "installation": {
            "shop_domain": installation.shop_domain, "status": installation.status, "mode": installation.mode,
            "environment": installation.environment, "account_id": installation.account_id,
            "connected": installation.account_id is not None and installation.status == "active",
        },
        "webhooks": webhooks,
        "pixel": {"registered": installation.pixel_id is not None,
                  "last_seen_at": _iso(installation.pixel_last_seen_at)},
        "token": {"status": installation.token_status, "expires_at": _iso(installation.token_expires_at)},
        "coverage": {"7d": _coverage(db, installation, now, 7), "30d": _coverage(db, installation, now, 30)},
        "parked_orders": parked,
        "pcd_warning": _pcd_warning(services, db, installation.shop_domain),
        "pcd_refused_topics": pcd_refused_topics(installation),
        "settings": settings_of(installation),
    }


@bp.route("/status", methods=["GET"])
@session_required
def status() -> Response:
    services = _services()
    with services.sessions() as db:
        installation = db.get(Installation, g.shopify_installation_id)
        assert installation is not None
        return json_response(status_of(services, db, installation))


@bp.route("/settings", methods=["POST"])
@session_required
def change_settings() -> Response:
    """SHP-82/SHP-99: any subset of the settings; 422 naming each invalid field; one audit row per change."""
    services = _services()
    accepted, errors = validate_settings(request.get_json(silent=True))
    if errors:
        return json_response({"success": False, "errors": errors}, 422)
    now = services.now()
    with services.sessions.begin() as db:
        installation = db.get(Installation, g.shopify_installation_id, with_for_update=True)
        assert installation is not None
        changed = apply_settings(db, installation, accepted, _claims().sub, now)
        result = settings_of(installation)
        installation_id = installation.id
    if "environment" in changed:  # SHP-99: the pixel must write to the new environment (new key, SHP-27)
        schedule_post_install(services, installation_id)
    return json_response(result)


@bp.route("/connect", methods=["POST"])
@session_required
def connect() -> Response:
    """SHP-28 (a) with `{"code": ...}` or (b) with `{"create_account": true}`."""
    services = _services()
    body = request.get_json(silent=True)
    try:
        if isinstance(body, dict) and body.get("create_account") is True:
            return json_response(connect_with_new_account(services, g.shopify_installation_id))
        if isinstance(body, dict) and "code" in body:
            return json_response(connect_with_code(services, g.shopify_installation_id, body["code"]))
    except ConnectRefused as refused:
        return json_response(refused.body, refused.status)
    return json_response({"success": False, "errors": ["code: required (or create_account: true)"]}, 422)


@bp.route("/repair", methods=["POST"])
@session_required
def repair() -> Response:
    """SHP-27/SHP-81: re-run the post-install job (queued, or inline without Redis)."""
    schedule_post_install(_services(), g.shopify_installation_id)
    return json_response({"status": "queued"}, 202)


def _available(row: ShopifyDataRequest, now: datetime) -> bool:
    return row.status == "ready" and row.export_enc is not None and (row.expires_at is None or row.expires_at > now)


@bp.route("/data-requests", methods=["GET"])
@session_required
def data_requests() -> Response:
    """SHP-81 (5): the shop's `customers/data_request` exports, newest first, with a link while available."""
    services = _services()
    now = services.now()
    with services.sessions() as db:
        installation = db.get(Installation, g.shopify_installation_id)
        assert installation is not None
        rows = db.scalars(sa.select(ShopifyDataRequest).where(
            ShopifyDataRequest.shop_domain == installation.shop_domain,
        ).order_by(ShopifyDataRequest.created_at.desc(), ShopifyDataRequest.id.desc())).all()
        listed = [{
            "id": row.id, "data_request_id": row.data_request_id, "customer_id": row.customer_id,
            "status": "expired" if row.status == "ready" and not _available(row, now) else row.status,
            "created_at": _iso(row.created_at), "ready_at": _iso(row.ready_at), "expires_at": _iso(row.expires_at),
            "download_url": f"/shopify/api/data-requests/{row.id}/download" if _available(row, now) else None,
        } for row in rows]
    return json_response(listed)


@bp.route("/data-requests/<request_id>/download", methods=["GET"])
@session_required
def download(request_id: str) -> Response:
    """The export JSON as an attachment; 404 for another shop's request and once it has expired (SHP-87)."""
    services = _services()
    now = services.now()
    settings = services.settings
    with services.sessions() as db:
        installation = db.get(Installation, g.shopify_installation_id)
        assert installation is not None
        row = db.scalars(sa.select(ShopifyDataRequest).where(
            ShopifyDataRequest.id == request_id, ShopifyDataRequest.shop_domain == installation.shop_domain,
        )).first()
        if row is None:
            return json_response({"error": "not_found"}, 404)
        if not _available(row, now):
            return json_response({"error": "expired"}, 404)
        export = cipher(settings.encryption_keys, settings.secret_key).decrypt((row.export_enc or "").encode())
    safe = re.fullmatch(r"[A-Za-z0-9_-]{1,40}", request_id)  # the id is in the filename: nothing else may be
    name = request_id if safe else hashlib.sha256(request_id.encode()).hexdigest()[:12]
    resp = Response(export, status=200, mimetype="application/json")
    resp.headers["Content-Disposition"] = f'attachment; filename="shopify-data-request-{name}.json"'
    return resp
