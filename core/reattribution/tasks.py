"""Running batches: RQ chunk jobs on their own queue, or synchronously in inline mode (ATT-54)."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from core.queue import PREFIX, RedisClient
from core.reattribution.service import process_chunk
from core.tenant import Tenant

__all__ = ["ATTRIBUTION_QUEUE", "chunk_job", "run_inline", "start_batch"]

ATTRIBUTION_QUEUE = f"{PREFIX}-attribution"


def run_inline(sessions: sessionmaker[Session], tenant: Tenant, batch_id: str) -> None:
    """Inline mode: every chunk, one after another, right after the trigger committed."""
    while process_chunk(sessions, tenant, batch_id):
        pass


def chunk_job(account_id: str, environment: str, batch_id: str) -> None:
    """One chunk per job; the next chunk is enqueued only when this one is done (strictly sequential)."""
    from core.jobs import runtime

    rt = runtime()
    tenant = Tenant(account_id, environment)
    if process_chunk(rt.sessions, tenant, batch_id):
        _enqueue(rt.redis, tenant, batch_id)


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
