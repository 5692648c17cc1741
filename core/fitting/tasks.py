"""The fit job (ATT-31): one per tenant at a time, on its own RQ queue, or synchronous in inline mode.

The conversion processor only flags a stale fit (``core.followups``); whoever committed the batch starts the
fit afterwards, so a fit never runs inside the ingest transaction and never sees uncommitted conversions.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from core.fitting.service import run_fit, stale_tenants
from core.queue import PREFIX, RedisClient
from core.tenant import Tenant

__all__ = ["FITS_QUEUE", "MAINTENANCE_EVERY_S", "enqueue_fit", "fit_job", "refit_stale_tenants", "run_fit_now"]

log = logging.getLogger("mbuzz.fits")

FITS_QUEUE = f"{PREFIX}-fits"
_PENDING = PREFIX + ":fit-pending:{account}:{environment}"
_PENDING_TTL_S = 600  # a crashed fit job frees its tenant after this long
MAINTENANCE_EVERY_S = 3600.0


def run_fit_now(sessions: sessionmaker[Session], tenant: Tenant) -> dict[str, str]:
    """Build and store both fits in one transaction; storing switches the current fit atomically."""
    with sessions.begin() as db:
        return run_fit(db, tenant)


def fit_job(account_id: str, environment: str) -> dict[str, str]:
    """RQ entry point (queue ``<prefix>-fits``, job id ``fit-<account>-<environment>``)."""
    from core.jobs import runtime

    rt = runtime()
    tenant = Tenant(account_id, environment)
    try:
        ids = run_fit_now(rt.sessions, tenant)
        log.info("fit %s:%s stored %s", account_id, environment, ids)
        return ids
    finally:
        rt.redis.delete(_PENDING.format(account=account_id, environment=environment))


def enqueue_fit(client: RedisClient, tenant: Tenant) -> bool:
    """At most one queued or running fit job per tenant: a ``SET NX`` flag guards the enqueue."""
    from rq import Queue

    flag = _PENDING.format(account=tenant.account_id, environment=tenant.environment)
    if not client.set(flag, b"1", nx=True, ex=_PENDING_TTL_S):
        return False
    try:
        Queue(FITS_QUEUE, connection=client).enqueue(
            fit_job, tenant.account_id, tenant.environment,
            job_id=f"fit-{tenant.account_id}-{tenant.environment}", result_ttl=3600, failure_ttl=86400,
        )
    except Exception:
        client.delete(flag)  # not enqueued: the next stale conversion tries again
        raise
    return True


def refit_stale_tenants(sessions: sessionmaker[Session], client: RedisClient) -> int:
    """The hourly maintenance of ATT-31, run by the workers' sweeper thread; returns the jobs enqueued."""
    with sessions() as db:
        tenants = stale_tenants(db, datetime.now(UTC))
    return sum(1 for tenant in tenants if enqueue_fit(client, tenant))
