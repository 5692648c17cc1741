"""Installations, the post-install job and connecting a shop to an account (shopify.md SHP-20, SHP-23..SHP-28,
SHP-85).

An install (token exchange or code grant) creates the shop's one `installations` row, or reuses it on a
reinstall so the `inst_` id, and with it every conversion key, stays stable. The post-install job then reads
the shop, registers the web pixel with a fresh pixel key once the shop is connected to an account, and makes
sure the webhook subscriptions exist, topic by topic: order and customer topics need Shopify's
protected-customer-data approval, and a shop whose app lacks it must still get its pixel and the other topics.
It is idempotent: it runs after every install, reinstall, connect, change of `environment` and repair, as an RQ
job on `mbuzz-shopify`, or inline when there is no Redis. Random values (OAuth nonce, pixel key, connect code)
come from injectable generators (SHP-4).

Connector state that has no column yet lives under the reserved key `_connector` of `installations.settings`
(never a SHP-99 setting: `settings_of` ignores it and the settings API refuses it): the webhook topics found
registered by the last run, the topics Shopify refused and why (`refused_topics`: protected customer data not
approved, or another user error), when that was, and whether SHP-24 still has to choose the environment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connectors.shopify.admin import AdminClient, AdminError, admin_client
from connectors.shopify.custom_pixel import custom_pixel_snippet
from connectors.shopify.envelopes import shop_domain
from connectors.shopify.models import ShopifyConnectCode, ShopifyWebhookDelivery
from connectors.shopify.outbound import TokenGrant, store_grant
from connectors.shopify.pixel_keys import issue_pixel_key
from connectors.shopify.queue import enqueue, worker_services
from connectors.shopify.topics import process_delivery
from core import accounts
from core.crypto import cipher
from core.ids import new_id
from core.storage.models import Account, DashboardUser, Installation
from core.storage.tenancy import all_tenants
from edge.services import AppServices

__all__ = [
    "API_TOPICS", "CLAIM_TTL", "CODE_TTL", "PCD_REFUSAL", "ConnectRefused", "Generators", "TOPIC_NAMES",
    "canonical_code",
    "ManualInstall", "claimable_account", "connect_with_code", "connect_with_new_account", "connector_state",
    "create_connect_code", "create_manual_installation",
    "generators", "missing_scopes", "post_install", "post_install_job", "process_deferred", "refusal_reason",
    "pcd_refused_topics", "refused_topics",
    "recheck_subscriptions", "recheck_subscriptions_job", "schedule_post_install", "upsert_installation",
    "use_generators",
]

log = logging.getLogger("mbuzz.shopify")

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_TTL = timedelta(minutes=30)
CLAIM_TTL = timedelta(hours=24)
DEFERRED_WINDOW = timedelta(days=7)
_CLAIM_SALT = "mbuzz-shopify-claim"

# SHP-98: the topics registered through the Admin API and their includeFields (None: all fields).
_ORDER_FIELDS = [
    "id", "admin_graphql_api_id", "name", "order_number", "confirmation_number", "email", "created_at",
    "processed_at", "updated_at", "cancelled_at", "cancel_reason", "currency", "presentment_currency",
    "taxes_included", "total_price", "subtotal_price", "total_tax", "total_discounts", "current_total_price",
    "current_subtotal_price", "current_total_tax", "total_price_set", "current_total_price_set",
    "current_subtotal_price_set", "current_total_tax_set", "total_discounts_set", "total_shipping_price_set",
    "financial_status", "test", "source_name", "app_id", "checkout_token", "cart_token", "landing_site",
    "referring_site", "note_attributes", "discount_codes", "payment_gateway_names", "customer", "line_items",
    "refunds",
]
_CUSTOMER_FIELDS = ["id", "email", "state", "verified_email", "created_at", "updated_at", "email_marketing_consent",
                    "tags"]
_SHOP_FIELDS = ["id", "name", "myshopify_domain", "domain", "currency", "iana_timezone", "plan_name"]
API_TOPICS: dict[str, list[str] | None] = {
    "ORDERS_PAID": _ORDER_FIELDS, "ORDERS_CREATE": _ORDER_FIELDS, "ORDERS_CANCELLED": _ORDER_FIELDS,
    "REFUNDS_CREATE": None, "CUSTOMERS_CREATE": _CUSTOMER_FIELDS, "CUSTOMERS_UPDATE": _CUSTOMER_FIELDS,
    "SHOP_UPDATE": _SHOP_FIELDS,
}
TOPIC_NAMES = {enum: enum.lower().replace("_", "/", 1) for enum in API_TOPICS}  # ORDERS_PAID -> orders/paid
PCD_REFUSAL = "protected_customer_data"

SHOP_QUERY = ("query MbuzzShop { shop { id name myshopifyDomain primaryDomain { host } domains { host } "
              "currencyCode ianaTimezone plan { partnerDevelopment } } }")
SUBSCRIPTIONS_QUERY = "query MbuzzWebhooks { webhookSubscriptions(first: 50) { nodes { id topic uri } } }"
SUBSCRIPTION_CREATE = (
    "mutation MbuzzWebhookCreate($topic: WebhookSubscriptionTopic!, "
    "$webhookSubscription: WebhookSubscriptionInput!) { webhookSubscriptionCreate(topic: $topic, "
    "webhookSubscription: $webhookSubscription) { webhookSubscription { id } userErrors { field message } } }")
PIXEL_CREATE = ("mutation MbuzzPixelCreate($webPixel: WebPixelInput!) { webPixelCreate(webPixel: $webPixel) "
                "{ webPixel { id } userErrors { code field message } } }")
PIXEL_QUERY = "query MbuzzPixel { webPixel { id } }"
PIXEL_UPDATE = ("mutation MbuzzPixelUpdate($id: ID!, $webPixel: WebPixelInput!) { webPixelUpdate(id: $id, "
                "webPixel: $webPixel) { webPixel { id } userErrors { code field message } } }")


# --- injectable generators (SHP-4) --------------------------------------------------------------------------

def _code_body() -> str:
    return "".join(secrets.choice(CROCKFORD) for _ in range(8))


@dataclass
class Generators:
    """Where random values come from; fixtures and tests replace them to be deterministic."""

    nonce: Callable[[], str] = field(default=lambda: secrets.token_urlsafe(32))  # SHP-22: 32 bytes, URL-safe
    pixel_key: Callable[[], str] = field(default=lambda: secrets.token_hex(16))  # SHP-13: 32 hex after pk_px_
    connect_code: Callable[[], str] = field(default=_code_body)  # SHP-28: 8 Crockford base32 characters
    connector_token: Callable[[], str] = field(default=lambda: secrets.token_urlsafe(32))  # SHP-77


_DEFAULT_GENERATORS = Generators()


def generators(services: AppServices) -> Generators:
    found = getattr(services, "shopify_generators", None)
    return found if isinstance(found, Generators) else _DEFAULT_GENERATORS


def use_generators(services: AppServices, chosen: Generators) -> None:
    """Make `services` (one app, or the worker) draw its random values from `chosen`."""
    setattr(services, "shopify_generators", chosen)  # noqa: B010  # a test hook on the app's services object


# --- connector state kept in installations.settings["_connector"] ---------------------------------------------

def connector_state(installation: Installation) -> dict[str, Any]:
    state = (installation.settings or {}).get("_connector")
    return dict(state) if isinstance(state, dict) else {}


def refused_topics(installation: Installation) -> dict[str, dict[str, str]]:
    """The topics Shopify refused in the last subscription run: `{topic: {"reason", "message"}}` (SHP-27)."""
    found = connector_state(installation).get("refused_topics")
    if not isinstance(found, dict):
        return {}
    return {str(t): r for t, r in found.items() if isinstance(r, dict) and isinstance(r.get("reason"), str)}


def pcd_refused_topics(installation: Installation) -> list[str]:
    """The topics refused because the app lacks Shopify's protected-customer-data approval, sorted."""
    return sorted(t for t, r in refused_topics(installation).items() if r["reason"] == PCD_REFUSAL)


def _set_state(installation: Installation, **values: Any) -> None:
    """A new JSON value (not an in-place change), so SQLAlchemy writes it."""
    installation.settings = {**(installation.settings or {}),
                             "_connector": {**connector_state(installation), **values}}


# --- creating and reactivating installations (SHP-20, SHP-23 step 7, SHP-24, SHP-85) ---------------------------

def missing_scopes(requested: str, granted: str | None) -> list[str]:
    """SHP-23 step 6: requested scopes not granted; a granted `write_x` satisfies a requested `read_x`."""
    have = {s.strip() for s in (granted or "").split(",") if s.strip()}
    missing = []
    for scope in (s.strip() for s in requested.split(",") if s.strip()):
        if scope in have or (scope.startswith("read_") and "write_" + scope[5:] in have):
            continue
        missing.append(scope)
    return missing


def _upsert(db: Session, settings: Any, shop: str, grant: TokenGrant, now: datetime) -> tuple[str, bool]:
    installation = db.scalars(sa.select(Installation).where(Installation.shop_domain == shop)
                              .with_for_update()).first()
    if installation is None:
        installation = Installation(
            id=new_id("inst", now), shop_domain=shop, domains=[], environment="live", mode="app",
            status="pending_connect", settings={"_connector": {"environment_pending": True}}, created_at=now,
            updated_at=now)
        db.add(installation)
    store_grant(installation, grant, settings, now)
    installation.mode = "app"
    installation.installed_at, installation.uninstalled_at = now, None
    connected_now = False
    auto = settings.shopify_auto_connect_account
    if installation.account_id is None and auto:  # SHP-28 (c)
        account = db.get(Account, auto)
        if account is not None and account.status == "active":
            installation.account_id, connected_now = account.id, True
        else:
            log.warning("MBUZZ_SHOPIFY_AUTO_CONNECT_ACCOUNT names no active account; %s waits for a connect", shop)
    installation.status = "active" if installation.account_id else "pending_connect"
    db.flush()
    return installation.id, connected_now


def upsert_installation(services: AppServices, shop: str, grant: TokenGrant) -> tuple[str, bool]:
    """Store the grant on the shop's row, creating it or reactivating it (SHP-85); commits.

    Returns the installation id and whether this install connected it (auto-connect, SHP-28 c). A new row
    starts `live` until the first shop query decides (SHP-24); a reused row keeps its id, account,
    environment and settings, and becomes `active` when it has an account, else `pending_connect`.
    """
    for attempt in range(2):  # two first installs of one shop at once: the loser reuses the winner's row
        try:
            with services.sessions.begin() as db:
                return _upsert(db, services.settings, shop, grant, services.now())
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


# --- the post-install job (SHP-27) ----------------------------------------------------------------------------

@dataclass
class PostInstallResult:
    shop_stored: bool = False
    topics_created: list[str] = field(default_factory=list)
    pixel_id: str | None = None


def _installation(services: AppServices, installation_id: str) -> Installation | None:
    with services.sessions() as db:
        installation: Installation | None = db.get(Installation, installation_id)
        if installation is not None:
            db.expunge(installation)
        return installation


def _store_shop(services: AppServices, installation_id: str, client: AdminClient) -> None:
    """Step 1: the shop's identity, domains, currency and time zone; SHP-24 picks the first environment."""
    shop = client.execute(SHOP_QUERY).get("shop")
    if not isinstance(shop, dict):
        raise AdminError(f"{client.shop}: the shop query answered no shop")

    def host(node: Any) -> str | None:
        value = node.get("host") if isinstance(node, dict) else None
        return str(value)[:255] if value else None

    with services.sessions.begin() as db:
        installation = db.get(Installation, installation_id)
        if installation is None:
            return
        installation.shop_gid = str(shop["id"])[:255] if shop.get("id") else installation.shop_gid
        installation.shop_name = str(shop["name"])[:255] if shop.get("name") else installation.shop_name
        installation.primary_domain = host(shop.get("primaryDomain")) or installation.primary_domain
        domains = [h for h in (host(d) for d in shop.get("domains") or []) if h]
        installation.domains = domains or installation.domains
        if isinstance(shop.get("currencyCode"), str) and len(shop["currencyCode"]) == 3:
            installation.currency = shop["currencyCode"].upper()
        if shop.get("ianaTimezone"):
            installation.iana_timezone = str(shop["ianaTimezone"])[:64]
        partner = bool((shop.get("plan") or {}).get("partnerDevelopment"))
        installation.plan_partner_development = partner
        if connector_state(installation).get("environment_pending"):  # SHP-24, once per new installation
            installation.environment = "test" if partner else "live"
            _set_state(installation, environment_pending=False)
        installation.updated_at = services.now()


def refusal_reason(errors: list[dict[str, Any]]) -> str:
    """Why Shopify refused a subscription: `protected_customer_data` when the app lacks that approval (order and
    customer topics carry customer data; Shopify answers "This app is not approved to subscribe to webhook topics
    containing protected customer data"), else `refused`."""
    text = " ".join(str(e.get("message", "")) for e in errors).lower()
    return PCD_REFUSAL if "protected customer data" in text else "refused"


def _subscribe(client: AdminClient, uri: str, topic: str) -> dict[str, str] | None:
    """One `webhookSubscriptionCreate`; None when created (or it exists already), else the refusal."""
    subscription: dict[str, Any] = {"uri": uri, "format": "JSON"}
    if API_TOPICS[topic] is not None:
        subscription["includeFields"] = API_TOPICS[topic]
    answer = client.execute(SUBSCRIPTION_CREATE, {"topic": topic, "webhookSubscription": subscription})
    errors = [e for e in (answer.get("webhookSubscriptionCreate") or {}).get("userErrors") or []
              if isinstance(e, dict)]
    if not errors or all("taken" in str(e.get("message", "")).lower() for e in errors):
        return None
    return {"reason": refusal_reason(errors), "message": "; ".join(str(e.get("message")) for e in errors)[:300]}


def _ensure_subscriptions(services: AppServices, installation_id: str, client: AdminClient) -> list[str]:
    """Step 2: create each SHP-98 subscription to `{MBUZZ_PUBLIC_URL}/shopify/webhooks` that is missing, topic by
    topic. A refused topic is recorded on the installation (`_connector.refused_topics`, shown on the embedded
    page and the dashboard) and the others still go ahead; a refusal other than protected customer data is then
    raised, so the job fails loudly and is retried."""
    uri = f"{services.settings.public_url.rstrip('/')}/shopify/webhooks"
    listing = client.execute(SUBSCRIPTIONS_QUERY).get("webhookSubscriptions") or {}
    nodes = listing.get("nodes") or [e.get("node") for e in listing.get("edges") or [] if isinstance(e, dict)]
    have = {n.get("topic") for n in nodes if isinstance(n, dict) and n.get("uri") == uri}
    created: list[str] = []
    refused: dict[str, dict[str, str]] = {}
    for topic in API_TOPICS:
        if topic in have:
            continue
        refusal = _subscribe(client, uri, topic)
        if refusal is None:
            created.append(topic)
        else:
            refused[TOPIC_NAMES[topic]] = refusal
    with services.sessions.begin() as db:
        installation = db.get(Installation, installation_id)
        if installation is not None:
            _set_state(installation, webhook_topics=sorted(TOPIC_NAMES[t] for t in API_TOPICS
                                                           if t in have or t in created),
                       refused_topics=refused, subscriptions_checked_at=services.now().isoformat())
    other = {topic: r["message"] for topic, r in refused.items() if r["reason"] != PCD_REFUSAL}
    if other:
        raise AdminError(f"{client.shop}: webhookSubscriptionCreate refused "
                         + "; ".join(f"{topic}: {message}" for topic, message in other.items())[:300])
    if refused:
        log.warning("%s: protected customer data not approved; not subscribed to %s", client.shop,
                    ", ".join(sorted(refused)))
    return created


def _register_pixel(services: AppServices, installation_id: str, client: AdminClient) -> str | None:
    """Step 3 (connected only): a new pixel key, then `webPixelCreate`, or `webPixelUpdate` if one exists."""
    settings = services.settings
    now = services.now()
    with services.sessions.begin() as db:
        installation = db.get(Installation, installation_id)
        if installation is None or installation.status != "active" or installation.account_id is None:
            return None
        key = issue_pixel_key(db, installation, now, generate=generators(services).pixel_key)
        account_id = installation.account_id
    pixel_settings = json.dumps({"accountID": account_id, "ingestKey": key,
                                 "endpoint": f"{settings.public_url.rstrip('/')}/shopify/pixel/v1/events"},
                                separators=(",", ":"))
    answer = client.execute(PIXEL_CREATE, {"webPixel": {"settings": pixel_settings}}).get("webPixelCreate") or {}
    errors = answer.get("userErrors") or []
    pixel_id = (answer.get("webPixel") or {}).get("id")
    if errors:
        exists = any(e.get("code") == "TAKEN" or "taken" in str(e.get("message", "")).lower()
                     or "exist" in str(e.get("message", "")).lower() for e in errors)
        if not exists:
            raise AdminError(f"{client.shop}: webPixelCreate: " + "; ".join(str(e.get("message")) for e in errors))
        current = (client.execute(PIXEL_QUERY).get("webPixel") or {}).get("id")
        if not current:
            raise AdminError(f"{client.shop}: a web pixel exists but its id could not be read")
        updated = client.execute(PIXEL_UPDATE, {"id": current, "webPixel": {"settings": pixel_settings}})
        update_errors = (updated.get("webPixelUpdate") or {}).get("userErrors") or []
        if update_errors:
            raise AdminError(f"{client.shop}: webPixelUpdate: "
                             + "; ".join(str(e.get("message")) for e in update_errors))
        pixel_id = current
    if not pixel_id:
        raise AdminError(f"{client.shop}: webPixelCreate answered no pixel id")
    with services.sessions.begin() as db:
        installation = db.get(Installation, installation_id)
        if installation is not None:
            installation.pixel_id, installation.updated_at = str(pixel_id)[:255], services.now()
    return str(pixel_id)


def post_install(services: AppServices, installation_id: str, client: AdminClient | None = None) -> PostInstallResult:
    """SHP-27 for an app installation that is not uninstalled: the shop, then the web pixel, then the webhook
    subscriptions topic by topic. The pixel comes first and each step runs even when the other failed, so a shop
    whose app lacks protected-customer-data approval still gets its pixel and every topic it may have; the first
    failure is raised at the end."""
    result = PostInstallResult()
    installation = _installation(services, installation_id)
    if installation is None or installation.status == "uninstalled" or installation.mode != "app":
        return result
    client = client or admin_client(services, installation_id, installation.shop_domain)
    _store_shop(services, installation_id, client)
    result.shop_stored = True
    failures: list[AdminError] = []
    try:
        result.pixel_id = _register_pixel(services, installation_id, client)
    except AdminError as exc:
        failures.append(exc)
    try:
        result.topics_created = _ensure_subscriptions(services, installation_id, client)
    except AdminError as exc:
        failures.append(exc)
    if failures:
        raise failures[0]
    return result


def process_deferred(services: AppServices, installation_id: str) -> int:
    """SHP-28: after connecting, the shop's `deferred` deliveries of the last 7 days are processed in receipt
    order; older ones become `ignored` with error `too_old`. Returns how many were processed."""
    now = services.now()
    with services.sessions.begin() as db:
        installation = db.get(Installation, installation_id)
        if installation is None or installation.status != "active":
            return 0
        rows = db.scalars(sa.select(ShopifyWebhookDelivery).where(
            ShopifyWebhookDelivery.shop_domain == installation.shop_domain,
            ShopifyWebhookDelivery.status == "deferred",
        ).order_by(ShopifyWebhookDelivery.received_at, ShopifyWebhookDelivery.id).with_for_update()).all()
        ready = []
        for row in rows:
            if now - row.received_at > DEFERRED_WINDOW:
                row.status, row.error = "ignored", "too_old"
            else:
                row.status = "stored"
                ready.append(row.id)
    for delivery_id in ready:
        process_delivery(services, delivery_id)
    return len(ready)


def _run(services: AppServices, installation_id: str, connected: bool) -> None:
    try:
        post_install(services, installation_id)
    finally:
        if connected:
            process_deferred(services, installation_id)


def post_install_job(installation_id: str, connected: bool = False) -> None:
    """RQ entry point (queue `mbuzz-shopify`): the post-install job, then deferred deliveries if it connected."""
    _run(worker_services(), installation_id, connected)


def schedule_post_install(services: AppServices, installation_id: str, connected: bool = False) -> None:
    """Queue the post-install job; without Redis run it now, logging (not raising) a Shopify failure, since
    the install itself is stored and `POST /shopify/api/repair` re-runs the job."""
    if enqueue(services, "connectors.shopify.install.post_install_job", installation_id, connected):
        return
    try:
        _run(services, installation_id, connected)
    except Exception as exc:  # background work run inline must not fail the request that triggered it
        log.warning("post-install job for %s failed inline: %s", installation_id, exc)


def recheck_subscriptions(services: AppServices) -> int:
    """The daily re-check of SHP-27 step 2 for every active app installation; returns how many were created.

    Shopify removes API-created subscriptions after repeated delivery failures, so they are re-created here.
    One shop's failure is logged and does not stop the others.
    """
    with services.sessions() as db:
        targets = db.execute(sa.select(Installation.id, Installation.shop_domain).where(
            Installation.status == "active", Installation.mode == "app")).all()
    created = 0
    for installation_id, shop in targets:
        try:
            created += len(_ensure_subscriptions(services, installation_id,
                                                 admin_client(services, installation_id, shop)))
        except Exception as exc:
            log.warning("daily subscription check for %s failed: %s", installation_id, exc)
    return created


def recheck_subscriptions_job() -> None:
    """RQ entry point for the daily re-check; the daily maintenance's gate (SHP-37-D3) keeps it to one a day."""
    recheck_subscriptions(worker_services())


# --- connecting (SHP-28) --------------------------------------------------------------------------------------

class ConnectRefused(Exception):
    """`POST /shopify/api/connect` refused: 409 already connected, 422 invalid or expired code."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body


_INVALID_CODE = ConnectRefused(422, {"success": False, "errors": ["invalid or expired code"]})
_ALREADY = ConnectRefused(409, {"success": False, "errors": ["the shop is already connected to an account"]})


def canonical_code(text: object) -> str | None:
    """`MBZ-XXXX-XXXX` with Crockford's reading rules (case-free, I/L→1, O→0, hyphens and spaces optional)."""
    if not isinstance(text, str):
        return None
    body = re.sub(r"[\s-]", "", text).upper()
    body = body.removeprefix("MBZ")
    body = body.translate(str.maketrans("ILO", "110"))
    if len(body) != 8 or any(c not in CROCKFORD for c in body):
        return None
    return f"MBZ-{body[:4]}-{body[4:]}"


def _code_digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def create_connect_code(services: AppServices, account_id: str, environment: str) -> str:
    """A single-use connect code for the dashboard (SHP-28 a): valid 30 min, stored only as its SHA-256."""
    if environment not in ("live", "test"):
        raise ValueError("environment: must be live or test")
    now = services.now()
    code = canonical_code("MBZ" + generators(services).connect_code())
    if code is None:
        raise ValueError("connect code generator: must give 8 Crockford base32 characters")
    with services.sessions.begin() as db:
        db.add(ShopifyConnectCode(code_sha256=_code_digest(code), account_id=account_id, environment=environment,
                                  expires_at=now + CODE_TTL, created_at=now))
    return code


def _locked_unconnected(db: Session, installation_id: str) -> Installation:
    installation = db.get(Installation, installation_id, with_for_update=True)
    if installation is None:
        raise ConnectRefused(404, {"error": "unknown installation"})
    if installation.account_id is not None or installation.status == "active":
        raise _ALREADY
    return installation


def _mark_connected(installation: Installation, account_id: str, now: datetime) -> None:
    installation.account_id, installation.status, installation.updated_at = account_id, "active", now


def connect_with_code(services: AppServices, installation_id: str, code: object) -> dict[str, Any]:
    """SHP-28 (a): consume the code (atomically, once) and connect to its account and environment."""
    now = services.now()
    canonical = canonical_code(code)
    with services.sessions.begin() as db:
        installation = _locked_unconnected(db, installation_id)
        if canonical is None:
            raise _INVALID_CODE
        row = db.execute(sa.update(ShopifyConnectCode).where(
            ShopifyConnectCode.code_sha256 == _code_digest(canonical), ShopifyConnectCode.used_at.is_(None),
            ShopifyConnectCode.expires_at > now,
        ).values(used_at=now).returning(ShopifyConnectCode.account_id, ShopifyConnectCode.environment),
            execution_options=all_tenants("a connect code names its tenant")).first()
        if row is None:
            raise _INVALID_CODE
        account_id, environment = row
        _mark_connected(installation, account_id, now)
        installation.environment = environment  # the code is bound to an environment; it wins over SHP-24
        _set_state(installation, environment_pending=False)
    schedule_post_install(services, installation_id, connected=True)
    return {"account_id": account_id, "environment": environment}


def _claim_serializer(services: AppServices) -> URLSafeSerializer:
    return URLSafeSerializer(services.settings.secret_key, salt=_CLAIM_SALT)


def connect_with_new_account(services: AppServices, installation_id: str) -> dict[str, Any]:
    """SHP-28 (b): a new account named after the shop, connected now, and a one-time 24 h claim URL.

    The claim token is signed (never stored): it names the account and its expiry, and it works only while
    the account has no dashboard user, so the first claim uses it up.
    """
    now = services.now()
    with services.sessions.begin() as db:
        installation = _locked_unconnected(db, installation_id)
        account, _test_key, _live_key = accounts.create_account(db, installation.shop_name
                                                                or installation.shop_domain)
        _mark_connected(installation, account.id, now)
        environment = installation.environment
    token = _claim_serializer(services).dumps({"account_id": account.id,
                                               "expires_at": int((now + CLAIM_TTL).timestamp())})
    schedule_post_install(services, installation_id, connected=True)
    return {"account_id": account.id, "environment": environment,
            "claim_url": f"{services.settings.public_url.rstrip('/')}/claim/{token}"}


def claimable_account(services: AppServices, db: Session, token: str) -> str | None:
    """The account a claim URL's token may still claim (unexpired, and no owner set yet), else None."""
    try:
        data = _claim_serializer(services).loads(token)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("account_id"), str):
        return None
    if not isinstance(data.get("expires_at"), int) or data["expires_at"] <= services.now().timestamp():
        return None
    if db.get(Account, data["account_id"]) is None:
        return None
    owner = db.scalar(sa.select(DashboardUser.id).where(DashboardUser.account_id == data["account_id"]).limit(1))
    return None if owner is not None else data["account_id"]


# --- manual mode (SHP-77) -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ManualInstall:
    """What the dashboard shows once, right after connecting a shop manually; nothing of it is stored in clear."""

    installation_id: str
    webhook_url: str = field(repr=False)  # holds the connector token
    pixel_snippet: str = field(repr=False)  # holds the pixel key


def create_manual_installation(services: AppServices, shop: str, signing_key: str, account_id: str,
                               environment: str) -> ManualInstall:
    """SHP-77: an `active` installation with `mode = manual` for a shop without the app.

    The merchant's webhook signing key is stored encrypted, the connector token (the secret part of the webhook
    URL) only as its SHA-256, and a pixel key is issued for the custom-pixel snippet. A shop that already has an
    installation which is not uninstalled is refused; an uninstalled row is reused (same `inst_` id, SHP-85).
    """
    valid = shop_domain(shop)
    if valid is None:
        raise ValueError("shop: must be a *.myshopify.com domain")
    if not isinstance(signing_key, str) or not signing_key.strip():
        raise ValueError("signing_key: the webhook signing key shown under Settings → Notifications is required")
    if environment not in ("live", "test"):
        raise ValueError("environment: must be live or test")
    settings = services.settings
    now = services.now()
    token = generators(services).connector_token()
    box = cipher(settings.encryption_keys, settings.secret_key)
    with services.sessions.begin() as db:
        if db.get(Account, account_id) is None:
            raise ValueError(f"account_id: no account {account_id}")
        installation = db.scalars(sa.select(Installation).where(Installation.shop_domain == valid)
                                  .with_for_update()).first()
        if installation is not None and installation.status != "uninstalled":
            raise ValueError(f"shop: {valid} is already connected ({installation.mode} mode, {installation.status})")
        if installation is None:
            installation = Installation(id=new_id("inst", now), shop_domain=valid, domains=[], settings={},
                                        created_at=now, updated_at=now)
            db.add(installation)
        installation.mode, installation.status, installation.account_id = "manual", "active", account_id
        installation.environment, installation.installed_at, installation.uninstalled_at = environment, now, None
        installation.manual_signing_key_enc = box.encrypt(signing_key.strip().encode()).decode()
        installation.connector_token_sha256 = hashlib.sha256(token.encode()).hexdigest()
        installation.access_token_enc = installation.refresh_token_enc = None  # no Admin API in this mode
        installation.updated_at = now
        db.flush()
        key = issue_pixel_key(db, installation, now, generate=generators(services).pixel_key)
        installation_id = installation.id
    base = settings.public_url.rstrip("/")
    return ManualInstall(installation_id=installation_id, webhook_url=f"{base}/shopify/webhooks/m/{token}",
                         pixel_snippet=custom_pixel_snippet(account_id, key, f"{base}/shopify/pixel/v1/events"))
