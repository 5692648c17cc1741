"""Work a batch asks for once it has committed: a refit (ATT-31), attribution retries (ATT-45).

Processors record it on the SQLAlchemy session (``Session.info``) while they run; whoever committed the batch
takes it afterwards and runs or enqueues it, so follow-up work never runs inside the ingest transaction and
never sees uncommitted rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from core.tenant import Tenant

__all__ = ["Followups", "followups_of", "run_followups", "take_followups"]

log = logging.getLogger("mbuzz.followups")

_KEY = "mbuzz.followups"


@dataclass
class Followups:
    refit: bool = False  # the tenant's fit is stale
    retry_attribution: list[str] = field(default_factory=list)  # conversions left pending by a failure
    batches: list[str] = field(default_factory=list)  # reattribution batches written by the batch (ATT-54)


def followups_of(db: Session) -> Followups:
    found = db.info.get(_KEY)
    if found is None:
        found = db.info[_KEY] = Followups()
    return found


def take_followups(db: Session) -> Followups:
    return db.info.pop(_KEY, None) or Followups()


def run_followups(
    db: Session,
    tenant: Tenant,
    refit: Callable[[Tenant], object] | None,
    retry: Callable[[Tenant, Sequence[str]], object] | None,
    start_batch: Callable[[Tenant, str], object] | None = None,
) -> None:
    """Call after the commit with the session that processed the batch. A follow-up that cannot start now is
    logged, never raised: the commands are committed, and the next stale conversion or the maintenance
    sweep asks again."""
    work = take_followups(db)
    try:
        if start_batch is not None:
            for batch_id in work.batches:
                start_batch(tenant, batch_id)
        if work.retry_attribution and retry is not None:
            retry(tenant, work.retry_attribution)
        if work.refit and refit is not None:
            refit(tenant)
    except Exception:
        log.exception("follow-up work of %s:%s could not start", tenant.account_id, tenant.environment)
