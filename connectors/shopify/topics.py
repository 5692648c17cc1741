"""Processing stored webhook deliveries by topic (shopify.md SHP-37, SHP-39).

A delivery is processed from its stored, encrypted body: in an RQ job when Redis is configured (retried at
+10 s, +60 s, +600 s), in the request after the ledger commit otherwise. Each topic's handler returns an
`Outcome`; its commands are appended to the core log first and the row changes that depend on them are
committed after, so nothing a merchant's shop sent is lost between the two.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import sqlalchemy as sa

import core.envelope
from connectors.shopify.compliance import compliance_delivery
from connectors.shopify.customers import customer_delivery
from connectors.shopify.envelopes import WEB_PIXEL
from connectors.shopify.journey import fetch_journey
from connectors.shopify.models import ShopifyWebhookDelivery
from connectors.shopify.money import OrderError
from connectors.shopify.orders import Outcome, order_delivery, refund_delivery
from connectors.shopify.pixel_keys import revoke_pixel_keys
from connectors.shopify.queue import enqueue, worker_services
from core.commands import Command, EventCommand, TouchCommand
from core.crypto import cipher
from core.storage.models import Installation, ShopifyOrder
from core.storage.tenancy import all_tenants
from core.tenant import Tenant
from edge.services import AppServices

__all__ = ["COMPLIANCE", "HANDLED", "after_outcome", "append_commands", "delivery_job", "enqueue_delivery",
           "process_delivery", "read_body"]

log = logging.getLogger("mbuzz.shopify")

HANDLED = frozenset({"orders/paid", "orders/create", "orders/cancelled", "refunds/create", "customers/create",
                     "customers/update", "shop/update", "app/uninstalled"})
COMPLIANCE = frozenset({"customers/data_request", "customers/redact", "shop/redact"})
ORDER_TOPICS = frozenset({"orders/paid", "orders/create", "orders/cancelled"})
JOB_RETRIES = (10, 60, 600)  # SHP-37
# SHP-62: a refund whose order is unknown is tried again this long after receipt, then ignored.
REFUND_WAITS = (timedelta(minutes=2), timedelta(minutes=10), timedelta(minutes=60), timedelta(hours=6),
                timedelta(hours=24))


def read_body(services: AppServices, delivery: ShopifyWebhookDelivery) -> Any:
    settings = services.settings
    raw = cipher(settings.encryption_keys, settings.secret_key).decrypt(str(delivery.body_enc).encode())
    return json.loads(raw, parse_float=Decimal)


def core_commands(envelopes: list[dict[str, Any]], now: datetime) -> list[Command]:
    """The envelopes as core commands, with what the Web Pixel's mean differently (SES-7): a browser pixel has no
    session id of its own (its sessions are resolved server-side), and a pixel event's referrer is its page's,
    already counted by that page view's session, so a later event on the same page must not look like new
    traffic."""
    commands = core.envelope.commands_from_envelopes(envelopes, now)
    return [_as_pixel(command) if envelope.get("source") == WEB_PIXEL else command
            for envelope, command in zip(envelopes, commands, strict=True)]


def _as_pixel(command: Command) -> Command:
    if isinstance(command, TouchCommand):
        command.client_session_id = None
    elif isinstance(command, EventCommand) and command.event_type != "page_view":
        command.referrer = None
    return command


def append_commands(services: AppServices, commands: list[dict[str, Any]], now: datetime) -> None:
    """Append in order, one log call per run of commands of the same tenant; a rejection fails the delivery.

    Nothing waits for processing: in queue mode the drain may need this very worker, and a command the core
    refuses there is recorded by the drain with its reason (inline, the refusal is seen here and retried)."""
    start = 0
    while start < len(commands):
        tenant = (commands[start]["account_id"], commands[start]["environment"])
        end = start
        while end < len(commands) and (commands[end]["account_id"], commands[end]["environment"]) == tenant:
            end += 1
        appended = services.log.append(Tenant(*tenant), core_commands(commands[start:end], now),
                                       wait=False)
        refused = [r for r in appended.results if r.status in ("rejected", "failed")]
        if refused:
            raise OrderError(f"core refused a command: {'; '.join(refused[0].errors)[:150]}")
        start = end


def _shop_update(installation: Installation, body: dict[str, Any], now: datetime) -> None:
    """Installation metadata from the shop payload; no command (SHP-86)."""
    for column, key in (("shop_name", "name"), ("primary_domain", "domain"), ("currency", "currency"),
                        ("iana_timezone", "iana_timezone")):
        if body.get(key):
            setattr(installation, column, str(body[key]))
    if body.get("plan_name"):
        installation.plan_partner_development = body["plan_name"] in ("partner_test", "affiliate")
    installation.updated_at = now


def _uninstalled(db: Any, installation: Installation, now: datetime) -> list[tuple[str, str]]:
    """SHP-84: tokens deleted, pixel key revoked at once, data kept; the parked orders to finish (SHP-55)."""
    if installation.status != "uninstalled":
        installation.status, installation.uninstalled_at = "uninstalled", now
        revoke_pixel_keys(db, installation.id, now)
    installation.access_token_enc = installation.refresh_token_enc = None
    installation.token_expires_at = installation.refresh_expires_at = None
    installation.updated_at = now
    return [(r.account_id, r.id) for r in db.scalars(sa.select(ShopifyOrder).where(
        ShopifyOrder.installation_id == installation.id, ShopifyOrder.status == "parked"),
        execution_options=all_tenants("an uninstalled shop's parked orders, by its installation"))]


def _handle(services: AppServices, db: Any, delivery: ShopifyWebhookDelivery, installation: Installation | None,
            body: Any, now: datetime) -> tuple[Outcome, list[tuple[str, str]]]:
    if not isinstance(body, dict):
        raise OrderError("body: not a JSON object")
    topic = delivery.topic
    if topic in COMPLIANCE:  # with or without an installation (SHP-35)
        return compliance_delivery(services, db, delivery, installation, body, now), []
    if installation is None or installation.account_id is None:
        return Outcome(status="ignored", error="unknown_shop"), []
    if topic == "shop/update":
        _shop_update(installation, body, now)
        return Outcome(), []
    if topic == "app/uninstalled":
        return Outcome(), _uninstalled(db, installation, now)
    if topic in ORDER_TOPICS:
        return order_delivery(db, installation, topic, body, delivery.api_version, delivery.id, now,
                              journey=partial(fetch_journey, services)), []
    if topic == "refunds/create":
        return refund_delivery(db, installation, body, now), []
    if topic in ("customers/create", "customers/update"):
        return customer_delivery(db, installation, body), []
    return Outcome(status="ignored", error="unknown_topic"), []


def settle(services: AppServices, db: Any, outcome: Outcome, now: datetime) -> None:
    """Commit an outcome: its row changes in the open transaction when it appends nothing; otherwise the
    commands are appended first and the row changes committed after, in a new transaction (SHP-36-D1)."""
    if not outcome.commands:
        for step in outcome.finish:
            step(db)
        return
    db.commit()  # the reads and upserts made while computing the outcome
    append_commands(services, outcome.commands, now)
    with services.sessions.begin() as after:
        for step in outcome.finish:
            step(after)


def process_delivery(services: AppServices, delivery_id: str, raise_errors: bool = False) -> None:
    """Run the topic's processing after the ledger commit; a failure marks the row `failed` (and re-raises for
    the RQ job, so that its retries run)."""
    now = services.now()
    try:
        with services.sessions() as db:
            delivery = db.get(ShopifyWebhookDelivery, delivery_id)
            if delivery is None or delivery.status not in ("stored", "failed", "waiting_order") \
                    or delivery.body_enc is None:
                return
            installation = db.scalars(sa.select(Installation).where(
                Installation.shop_domain == delivery.shop_domain)).first()
            outcome, parked = _handle(services, db, delivery, installation, read_body(services, delivery), now)
            outcome.finish.append(lambda db: _finish(db, delivery_id, outcome, now))
            settle(services, db, outcome, now)
            db.commit()
    except Exception as exc:  # SHP-36: the delivery was accepted; the row records the failure
        log.exception("webhook delivery %s failed", delivery_id)
        with services.sessions.begin() as db:
            failed = db.get(ShopifyWebhookDelivery, delivery_id)
            if failed is not None:
                failed.status, failed.error = "failed", f"{type(exc).__name__}: {exc}"[:200]
                failed.attempts += 1
        if raise_errors:
            raise
        return
    after_outcome(services, outcome, parked)


def _finish(db: Any, delivery_id: str, outcome: Outcome, now: datetime) -> None:
    delivery = db.get(ShopifyWebhookDelivery, delivery_id)
    if delivery is None:
        return
    delivery.attempts += 1
    if outcome.status == "waiting_order" and delivery.attempts > len(REFUND_WAITS):
        delivery.status, delivery.error = "ignored", "order_unknown"
        return
    delivery.status, delivery.error = outcome.status, outcome.error
    if outcome.status == "processed":
        delivery.processed_at = now


def after_outcome(services: AppServices, outcome: Outcome, parked: list[tuple[str, str]] | None = None) -> None:
    """Follow-up work once the delivery's changes are committed: retries, waiting refunds, parked orders."""
    from connectors.shopify import sweep

    if outcome.retry_order is not None:
        account_id, row_id, attempts, when = outcome.retry_order
        enqueue(services, "connectors.shopify.sweep.order_retry_job", account_id, row_id, attempts,
                delay=max(when - services.now(), timedelta(0)))
    if outcome.order_created is not None:
        sweep.run_waiting_refunds(services, *outcome.order_created)
    for account_id, row_id in parked or []:
        sweep.rerun_order(services, account_id, row_id, final=True)


def delivery_job(delivery_id: str) -> None:
    """RQ job: process one stored delivery in the worker (SHP-37)."""
    process_delivery(worker_services(), delivery_id, raise_errors=True)


def enqueue_delivery(services: AppServices, delivery_id: str) -> bool:
    """Queue mode: the delivery is processed by a worker, with SHP-37's retries; False without Redis."""
    return enqueue(services, "connectors.shopify.topics.delivery_job", delivery_id, retries=JOB_RETRIES)
