"""Running batches: RQ chunk jobs on their own queue, or synchronously in inline mode (ATT-54)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from redis.exceptions import LockError
from sqlalchemy.orm import Session, sessionmaker

from core.queue import PREFIX, RedisClient
from core.reattribution.service import attribute_pending, process_chunk
from core.storage.models import ReattributionBatch
from core.tenant import Tenant

__all__ = ["ATTRIBUTION_QUEUE", "chunk_job", "enqueue_attribution_retries", "recover_batches",
           "retry_attribution_inline", "retry_attribution_job", "run_inline", "start_batch"]

log = logging.getLogger("mbuzz.reattribution")

ATTRIBUTION_QUEUE = f"{PREFIX}-attribution"
_RUNNING = PREFIX + ":batch-running:{batch}"  # held while one job runs a chunk of the batch
_KICKED = PREFIX + ":batch-kicked:{batch}"  # a recovery job was enqueued recently
CHUNK_LEASE_S = 600
# A batch not started this long after its trigger committed (a crash between commit and enqueue), or whose
# chain of chunk jobs broke, is started again by the workers' sweeper; also how often the sweeper looks.
# ATT-45: attempts 10 s, 60 s and 300 s after the failure (RQ's scheduler runs in the worker).
FIRST_RETRY = timedelta(seconds=10)
LATER_RETRIES = (50, 240)


def retry_attribution_job(account_id: str, environment: str, conversion_id: str) -> None:
    from core.jobs import runtime

    attribute_pending(runtime().sessions, Tenant(account_id, environment), conversion_id)


def enqueue_attribution_retries(client: RedisClient, tenant: Tenant, conversion_ids: Sequence[str]) -> None:
    from rq import Queue, Retry

    queue = Queue(ATTRIBUTION_QUEUE, connection=client)
    for conversion_id in conversion_ids:
        queue.enqueue_in(FIRST_RETRY, retry_attribution_job, tenant.account_id, tenant.environment, conversion_id,
                         retry=Retry(max=len(LATER_RETRIES), interval=list(LATER_RETRIES)), failure_ttl=7 * 86400)


def retry_attribution_inline(sessions: sessionmaker[Session], tenant: Tenant, conversion_ids: Sequence[str]) -> None:
    """Inline mode has no scheduler: one more attempt right after the commit; a failure stays pending."""
    for conversion_id in conversion_ids:
        try:
            attribute_pending(sessions, tenant, conversion_id)
        except Exception:
            log.exception("attribution of %s failed again; it stays pending", conversion_id)


def run_inline(sessions: sessionmaker[Session], tenant: Tenant, batch_id: str) -> None:
    """Inline mode: every chunk, one after another, right after the trigger committed."""
    while process_chunk(sessions, tenant, batch_id):
        pass


def chunk_job(account_id: str, environment: str, batch_id: str) -> None:
    """One chunk per job; the next chunk is enqueued only when this one is done (strictly sequential).

    A lease in Redis keeps two jobs of one batch (the chain and a recovery) from running chunks at once."""
    from core.jobs import runtime

    rt = runtime()
    tenant = Tenant(account_id, environment)
    lease = rt.redis.lock(_RUNNING.format(batch=batch_id), timeout=CHUNK_LEASE_S, blocking=False)
    if not lease.acquire(blocking=False):
        return  # another job holds the batch and continues its chain
    try:
        more = process_chunk(rt.sessions, tenant, batch_id)
    finally:
        try:
            lease.release()
        except LockError:
            pass  # expired during a very long chunk: nothing to release
    if more:
        _enqueue(rt.redis, tenant, batch_id)


def recover_batches(sessions: sessionmaker[Session], client: RedisClient, recovery_s: float,
                    now: datetime | None = None) -> int:
    """Enqueue a chunk job for every pending or running batch older than ``recovery_s`` (``MBUZZ_BATCH_RECOVERY_S``)
    that no job holds."""
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=recovery_s)
    with sessions() as db:
        stranded = db.execute(sa.select(ReattributionBatch.account_id, ReattributionBatch.environment,
                                        ReattributionBatch.id)
                              .where(ReattributionBatch.status.in_(["pending", "running"]),
                                     ReattributionBatch.created_at < cutoff)).all()
    kicked = 0
    for account_id, environment, batch_id in stranded:
        if client.exists(_RUNNING.format(batch=batch_id)):
            continue
        if client.set(_KICKED.format(batch=batch_id), b"1", nx=True, ex=max(1, int(recovery_s * 2))):
            _enqueue(client, Tenant(account_id, environment), batch_id)
            kicked += 1
    return kicked


def _enqueue(client: RedisClient, tenant: Tenant, batch_id: str) -> None:
    from rq import Queue

    Queue(ATTRIBUTION_QUEUE, connection=client).enqueue(
        chunk_job, tenant.account_id, tenant.environment, batch_id, result_ttl=0, failure_ttl=86400
    )


def start_batch(sessions: sessionmaker[Session], client: RedisClient | None, tenant: Tenant, batch_id: str) -> None:
    """After the trigger's commit: queued mode enqueues the first chunk, inline mode runs them all."""
    if client is None:
        run_inline(sessions, tenant, batch_id)
    else:
        _enqueue(client, tenant, batch_id)
