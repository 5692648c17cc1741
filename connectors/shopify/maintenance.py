"""The Shopify connector's daily maintenance (shopify.md SHP-8, SHP-27, SHP-37, SHP-87).

One run, at most once per 24 h across every process (`claim_daily_run`):

1. SHP-37: each `failed` delivery received less than 7 days ago (and more than an hour ago, so the RQ retries
   of its first processing are over) is processed once more with `topics.process_delivery`. A row the daily job
   retried carries `RETRIED_MARK` at the start of its `error`, so it is never selected again (no extra column).
2. SHP-8: `body_enc` is nulled on every ledger row received 30 days ago or earlier, whatever its status.
3. SHP-87: data request exports past their `expires_at` (30 days) become `expired` and the export is deleted.
4. SHP-10: checkout links not seen for 90 days are deleted (an order that old is linked or recorded already).
5. SHP-27: step 2 of the post-install job (the webhook subscriptions) for every active app installation:
   `install.recheck_subscriptions_job` on `<prefix>-shopify` when Redis answers, `recheck_subscriptions` inline
   otherwise, since it calls the Admin API once or more per shop.
6. SHP-23: app installations still holding a non-expiring offline token are moved to an expiring one
   (`outbound.migrate_non_expiring_tokens`; public apps must use expiring tokens from 2027-01-01), so a shop whose
   merchant never opens the app keeps working.
7. SHP-6: a configured `SHOPIFY_API_VERSION` past Shopify's 12 months of support is logged as a warning.

Nulling bodies after 30 days loses nothing the connector still needs: `stored` rows are processed on receipt,
`failed` ones are retried within 7 days, `waiting_order` refunds end after 24 h, `deferred` rows older than
7 days become `ignored` (`too_old`) when their shop connects, and a parked order, which reads its paid payload
from the ledger again (`sweep.rerun_order`), is parked for about an hour (SHP-51: final run at +60 min).

The worker checks the gate every 60 s (`gateway/cli.py`); `flask --app gateway mbuzz shopify-maintenance` runs
it by hand or from cron (the way to run it without a worker). It is never run inside a request: it calls the
Admin API per shop, and a webhook must be answered within Shopify's timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

import redis
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from connectors.shopify.api_version import warn_if_unsupported
from connectors.shopify.compliance import EXPORT_KEPT
from connectors.shopify.install import recheck_subscriptions
from connectors.shopify.models import ShopifyCheckoutLink, ShopifyDataRequest, ShopifyOAuthState, ShopifyWebhookDelivery
from connectors.shopify.outbound import migrate_non_expiring_tokens
from connectors.shopify.queue import SHOPIFY_QUEUE, enqueue
from connectors.shopify.topics import process_delivery
from core.storage.tenancy import all_tenants
from edge.services import AppServices

__all__ = ["BODY_KEPT", "CHECKOUT_LINKS_KEPT", "EVERY", "GATE_KEY", "LEASE_KEY", "RETRIED_MARK", "RETRY_SETTLED",
           "RETRY_WINDOW", "claim_daily_run", "delete_old_checkout_links", "expire_data_requests", "null_old_bodies",
           "recheck_subscriptions_step", "retry_failed_deliveries", "run_daily_maintenance", "run_if_due"]

log = logging.getLogger("mbuzz.shopify")

EVERY = timedelta(hours=24)
RETRY_WINDOW = timedelta(days=7)  # SHP-37: failed rows younger than this are retried once
RETRY_SETTLED = timedelta(hours=1)  # after the RQ retries of the first processing (+10 s, +60 s, +600 s)
BODY_KEPT = timedelta(days=30)  # SHP-8
CHECKOUT_LINKS_KEPT = timedelta(days=90)  # SHP-10, after `last_seen_at`
RETRIED_MARK = "daily retry: "  # prefix of `error` on a row the daily job retried (SHP-37-D2)
BATCH = 1000

# The gate: with Redis a key holding the next due instant (epoch seconds of the injectable clock, SHP-4); without
# it a lease row in `shopify_oauth_states` whose key is not a SHA-256, so no OAuth state can ever match it.
GATE_KEY = f"{SHOPIFY_QUEUE}:maintenance"
LEASE_KEY = "mbuzz:shopify-maintenance"
_LEASE_SHOP = "-"
# Take the gate over when the stored due instant has passed (a holder whose EX has not run out yet, because the
# services' clock is ahead of Redis's, e.g. a fixture replay); atomic, so two processes never both win.
_TAKE_OVER = """
local due = tonumber(redis.call('GET', KEYS[1]) or '0')
if due ~= nil and due > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""

Delivery = ShopifyWebhookDelivery


# --- the gate -------------------------------------------------------------------------------------------------

def claim_daily_run(services: AppServices, force: bool = False) -> bool:
    """True when the caller now owns the run of the next 24 h (and must do it); False when it ran less than 24 h
    ago in any process. `force` claims it whatever the last run (the CLI's `--force`)."""
    now: datetime = services.now()
    due = now + EVERY
    if services.redis is not None:
        try:
            return _claim_in_redis(services.redis, now, due, force)
        except redis.RedisError:
            log.warning("Redis unavailable: the Shopify daily maintenance is gated by the database")
    return _claim_in_database(services, now, due, force)


def _claim_in_redis(client: Any, now: datetime, due: datetime, force: bool) -> bool:
    value, ttl = f"{due.timestamp():.3f}", int(EVERY.total_seconds())
    if force:
        client.set(GATE_KEY, value, ex=ttl)
        return True
    if client.set(GATE_KEY, value, nx=True, ex=ttl):
        return True
    return bool(client.eval(_TAKE_OVER, 1, GATE_KEY, f"{now.timestamp():.3f}", value, ttl))


def _claim_in_database(services: AppServices, now: datetime, due: datetime, force: bool) -> bool:
    lease = ShopifyOAuthState
    with services.sessions.begin() as db:
        held = db.get(lease, LEASE_KEY)
        if held is not None and held.expires_at > now and not force:
            return False  # the common answer, without a write
        if held is not None:
            claim = sa.update(lease).where(lease.nonce_sha256 == LEASE_KEY).values(expires_at=due, used_at=now)
            if not force:
                claim = claim.where(lease.expires_at <= now)  # another process may have claimed it meanwhile
            return db.execute(claim.returning(lease.nonce_sha256)).first() is not None
    try:
        with services.sessions.begin() as db:
            db.add(lease(nonce_sha256=LEASE_KEY, shop_domain=_LEASE_SHOP, expires_at=due, used_at=now,
                         created_at=now))
    except IntegrityError:  # a concurrent first run inserted it
        return False
    return True


# --- SHP-37: failed deliveries, retried once ------------------------------------------------------------------

def _marked(error: str | None) -> str:
    return (RETRIED_MARK + (error or ""))[:200]


def _claim_retry(services: AppServices, delivery_id: str) -> bool:
    """Mark the row before retrying it, so a crash or a second run never retries it again."""
    with services.sessions.begin() as db:
        row = db.get(Delivery, delivery_id, with_for_update=True)
        if row is None or row.status != "failed" or (row.error or "").startswith(RETRIED_MARK):
            return False
        row.error = _marked(row.error)
        return True


def _settle_retry(services: AppServices, delivery_id: str) -> bool:
    """True when the retry took the row out of `failed`; otherwise its new error gets the mark back."""
    with services.sessions.begin() as db:
        row = db.get(Delivery, delivery_id, with_for_update=True)
        if row is None or row.status != "failed":
            return True
        if not (row.error or "").startswith(RETRIED_MARK):
            row.error = _marked(row.error)
        return False


def retry_failed_deliveries(services: AppServices) -> dict[str, int]:
    """SHP-37: every `failed` row younger than 7 days, not yet retried by this job, processed once more."""
    now: datetime = services.now()
    with services.sessions() as db:
        candidates = list(db.scalars(sa.select(Delivery.id).where(
            Delivery.status == "failed", Delivery.received_at > now - RETRY_WINDOW,
            Delivery.received_at <= now - RETRY_SETTLED, Delivery.body_enc.is_not(None),
            sa.or_(Delivery.error.is_(None), sa.not_(Delivery.error.startswith(RETRIED_MARK, autoescape=True))),
        ).order_by(Delivery.received_at, Delivery.id)))
    retried = recovered = 0
    for delivery_id in candidates:
        if not _claim_retry(services, delivery_id):
            continue
        retried += 1
        process_delivery(services, delivery_id)  # a failure is recorded on the row, never raised
        recovered += _settle_retry(services, delivery_id)
    return {"retried": retried, "recovered": recovered, "still_failed": retried - recovered}


# --- SHP-8: ledger bodies, SHP-87: data request exports -------------------------------------------------------

def null_old_bodies(services: AppServices) -> int:
    """SHP-8: `body_enc` nulled on every row received 30 days ago or earlier, in batches; returns how many."""
    cutoff = services.now() - BODY_KEPT
    nulled = 0
    while True:
        with services.sessions.begin() as db:
            ids = list(db.scalars(sa.select(Delivery.id).where(
                Delivery.body_enc.is_not(None), Delivery.received_at <= cutoff).limit(BATCH)))
            if ids:
                db.execute(sa.update(Delivery).where(Delivery.id.in_(ids)).values(body_enc=None))
        nulled += len(ids)
        if len(ids) < BATCH:
            return nulled


def expire_data_requests(services: AppServices) -> int:
    """SHP-87: an export is kept 30 days, then deleted; the row stays, `expired`, so the embedded page lists it."""
    now: datetime = services.now()
    request = ShopifyDataRequest
    with services.sessions.begin() as db:
        ids = list(db.scalars(sa.select(request.id).where(
            sa.or_(request.status != "expired", request.export_enc.is_not(None)),
            sa.or_(request.expires_at <= now,
                   sa.and_(request.expires_at.is_(None), request.created_at <= now - EXPORT_KEPT)))))
        if ids:
            db.execute(sa.update(request).where(request.id.in_(ids)).values(status="expired", export_enc=None))
    return len(ids)


def delete_old_checkout_links(services: AppServices) -> int:
    """SHP-10: checkout links are deleted 90 days after they were last seen; returns how many."""
    with services.sessions.begin() as db:
        result = db.execute(sa.delete(ShopifyCheckoutLink).where(
            ShopifyCheckoutLink.last_seen_at <= services.now() - CHECKOUT_LINKS_KEPT),
            execution_options=all_tenants("SHP-10's retention, every shop at once"))
    return int(cast(sa.CursorResult[Any], result).rowcount or 0)


# --- SHP-27: the daily subscription re-check ------------------------------------------------------------------

def recheck_subscriptions_step(services: AppServices) -> dict[str, int]:
    """Queued on `<prefix>-shopify` when Redis answers (the Admin API is called per shop), inline otherwise."""
    if enqueue(services, "connectors.shopify.install.recheck_subscriptions_job"):
        return {"subscriptions_created": 0, "subscription_checks_queued": 1}
    return {"subscriptions_created": recheck_subscriptions(services), "subscription_checks_queued": 0}


def api_version_step(services: AppServices) -> int:
    """SHP-6: a configured Admin API version past its 12 months of support is logged every day (1), else 0."""
    status = warn_if_unsupported(services.settings, services.now())
    return int(status is not None and not status.supported)


# --- SHP-23: non-expiring offline tokens moved to expiring ones ---------------------------------------------------

def migrate_tokens_step(services: AppServices) -> dict[str, int]:
    """Every app installation still holding a non-expiring token is moved to an expiring one (public apps must use
    them from 2027-01-01), so a shop whose merchant never opens the app keeps working."""
    results = migrate_non_expiring_tokens(services)
    migrated = sum(1 for r in results if r.migrated)
    return {"tokens_migrated": migrated, "token_migrations_failed": len(results) - migrated}


# --- the run --------------------------------------------------------------------------------------------------

def run_daily_maintenance(services: AppServices) -> dict[str, int]:
    """Every step once, now (the caller owns the gate); a step's failure is logged and counted in `errors`, and
    the other steps still run. Returns what was done, for the logs and the CLI."""
    steps: list[tuple[str, Callable[[], dict[str, int]]]] = [
        ("failed deliveries", lambda: retry_failed_deliveries(services)),
        ("ledger bodies", lambda: {"bodies_nulled": null_old_bodies(services)}),
        ("data requests", lambda: {"data_requests_expired": expire_data_requests(services)}),
        ("checkout links", lambda: {"checkout_links_deleted": delete_old_checkout_links(services)}),
        ("expiring tokens", lambda: migrate_tokens_step(services)),  # first: the Admin calls below need a token
        ("subscriptions", lambda: recheck_subscriptions_step(services)),
        ("api version", lambda: {"api_version_unsupported": api_version_step(services)}),
    ]
    counts = {"retried": 0, "recovered": 0, "still_failed": 0, "bodies_nulled": 0, "data_requests_expired": 0,
              "checkout_links_deleted": 0, "subscriptions_created": 0, "subscription_checks_queued": 0,
              "tokens_migrated": 0, "token_migrations_failed": 0, "api_version_unsupported": 0, "errors": 0}
    for name, step in steps:
        try:
            counts.update(step())
        except Exception:  # the next day's run tries again; nothing here loses data by waiting a day
            log.exception("Shopify daily maintenance: %s failed", name)
            counts["errors"] += 1
    log.info("Shopify daily maintenance: %s", " ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


def run_if_due(services: AppServices) -> dict[str, int] | None:
    """The daily maintenance if no process ran it in the last 24 h (then its counts), else None."""
    if not claim_daily_run(services):
        return None
    return run_daily_maintenance(services)
