"""Reattribution batches (attribution.md ATT-48..ATT-54): identify, late sessions, acquisitions, settings
changes and recalculation.

A batch names a trigger, the models and a scope (conversion ids, or a query). It is written in the trigger's
transaction. Its first chunk claims it (pending → running) and counts the conversions in scope; chunks of 100
follow in ascending (converted_at, id) with a keyset cursor, strictly one after another. Each conversion is
reattributed in its own transaction under a row lock, so readers always see its old rows or its new rows
(ATT-48); a conversion that fails three times is counted and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.attribution import DATA_DRIVEN, MODELS
from core.fitting.service import current_fits, fit_snapshot, is_stale, run_fit
from core.ids import new_id
from core.processors.attribution import attribute_conversion
from core.processors.context import Ctx
from core.settings import SettingsChange, change_settings, load_config
from core.storage.models import AttributionCredit, Conversion, ReattributionBatch
from core.tenant import ENVIRONMENTS, Tenant

__all__ = ["CHUNK", "Progress", "active_batches", "apply_settings_change", "attribute_pending", "create_batch",
           "process_chunk", "recalculate_scope", "settings_scope"]

log = logging.getLogger("mbuzz.reattribution")

CHUNK = 100
ATTEMPTS = 3


@dataclass(frozen=True)
class Progress:
    id: str
    trigger: str
    status: str
    processed: int
    total: int | None
    failed_count: int


def _progress(batch: ReattributionBatch) -> Progress:
    return Progress(batch.id, batch.trigger, batch.status, batch.processed, batch.total, batch.failed_count)


def settings_scope(db: Session, account_id: str, change: SettingsChange) -> dict[str, Any]:
    """ATT-51: conversions whose rows carry an older version, or that a journey setting may now attribute."""
    versions = load_config(db, account_id).config_versions
    return {"query": "stale", "versions": {m: versions[m] for m in change.models},
            "unattributed": change.journey_changed, "enabled": list(change.newly_enabled)}


def recalculate_scope() -> dict[str, Any]:
    return {"query": "all"}


def create_batch(db: Session, tenant: Tenant, trigger: str, models: Sequence[str],
                 scope: dict[str, Any]) -> ReattributionBatch:
    """Written in the trigger's transaction (ATT-54); an identical pending batch is reused."""
    ordered = [m for m in MODELS if m in models]
    for pending in db.scalars(sa.select(ReattributionBatch).where(
        ReattributionBatch.account_id == tenant.account_id, ReattributionBatch.environment == tenant.environment,
        ReattributionBatch.status == "pending", ReattributionBatch.trigger == trigger,
    )):
        if pending.models == ordered and pending.scope == scope:
            return pending
    batch = ReattributionBatch(account_id=tenant.account_id, id=new_id("rab"), environment=tenant.environment,
                               trigger=trigger, models=ordered, scope=scope, status="pending", processed=0,
                               failed_count=0, created_at=datetime.now(UTC))
    db.add(batch)
    db.flush()
    return batch


def apply_settings_change(db: Session, account_id: str, changes: dict[str, Any]) -> list[ReattributionBatch]:
    """ATT-1/ATT-2/ATT-51: store a settings change and, when it moved a model's version, one batch per
    environment in the same transaction. Start the returned batches after the commit."""
    change = change_settings(db, account_id, changes)
    if not change.models:
        return []
    scope = settings_scope(db, account_id, change)
    return [create_batch(db, Tenant(account_id, env), "settings_change", change.models, scope)
            for env in ENVIRONMENTS]


def _in_scope(batch: ReattributionBatch) -> Any:
    """The SQL condition on ``Conversion`` for the batch's scope."""
    scope = batch.scope
    if "ids" in scope:
        return Conversion.id.in_(scope["ids"])
    if scope.get("query") == "all":
        return sa.true()
    rows = AttributionCredit
    same = sa.and_(rows.account_id == Conversion.account_id, rows.conversion_id == Conversion.id)
    stale: list[sa.ColumnElement[bool]] = [
        sa.exists().where(same, rows.model == model, rows.model_config_version < version)
        for model, version in scope["versions"].items()
    ]
    if scope.get("unattributed"):
        stale.append(sa.func.coalesce(Conversion.sessions_analyzed, 0) == 0)
    for model in scope.get("enabled", []):
        stale.append(sa.and_(Conversion.sessions_analyzed > 0, ~sa.exists().where(same, rows.model == model)))
    return sa.or_(*stale) if stale else sa.false()


def _conversions(db: Session, batch: ReattributionBatch) -> Any:
    return sa.select(Conversion.converted_at, Conversion.id).where(
        Conversion.account_id == batch.account_id, Conversion.environment == batch.environment, _in_scope(batch)
    )


def _claim(sessions: sessionmaker[Session], tenant: Tenant, batch_id: str) -> ReattributionBatch | None:
    """pending → running once (the row lock serializes competing jobs); counts the scope (ATT-54)."""
    with sessions.begin() as db:
        batch = db.scalars(sa.select(ReattributionBatch).where(
            ReattributionBatch.account_id == tenant.account_id, ReattributionBatch.id == batch_id,
        ).with_for_update()).first()
        if batch is None or batch.status not in ("pending", "running"):
            return None
        if batch.status == "pending":
            batch.total = db.scalar(sa.select(sa.func.count()).select_from(_conversions(db, batch).subquery()))
            batch.status, batch.started_at = "running", datetime.now(UTC)
            if set(batch.models) & set(DATA_DRIVEN):
                _refit_first(db, tenant)
        db.expunge(batch)
        return batch


def _refit_first(db: Session, tenant: Tenant) -> None:
    """ATT-51: data-driven models are reattributed only with a fit of the current settings."""
    config = load_config(db, tenant.account_id)
    if is_stale(current_fits(db, tenant), fit_snapshot(config.attribution, config.fit_window_days),
                datetime.now(UTC)):
        run_fit(db, tenant)


def _reattribute_one(sessions: sessionmaker[Session], tenant: Tenant, conversion_id: str,
                     only_pending: bool = False) -> None:
    """ATT-48: lock the conversion, recompute every enabled model, replace its rows, commit."""
    with sessions.begin() as db:
        conv = db.scalars(sa.select(Conversion).where(
            Conversion.account_id == tenant.account_id, Conversion.environment == tenant.environment,
            Conversion.id == conversion_id,
        ).with_for_update()).first()
        if conv is None or (only_pending and conv.attribution_status == "complete"):
            return  # purged meanwhile, or already attributed by a later reattribution
        attribute_conversion(Ctx(db=db, tenant=tenant, config=load_config(db, tenant.account_id)), conv)


def attribute_pending(sessions: sessionmaker[Session], tenant: Tenant, conversion_id: str) -> None:
    """ATT-45: one more attempt for a conversion whose attribution failed; raises if it fails again."""
    _reattribute_one(sessions, tenant, conversion_id, only_pending=True)


def process_chunk(sessions: sessionmaker[Session], tenant: Tenant, batch_id: str) -> bool:
    """Process the next chunk of a batch; True while more chunks remain."""
    batch = _claim(sessions, tenant, batch_id)
    if batch is None:
        return False
    with sessions() as db:
        query = _conversions(db, batch).order_by(Conversion.converted_at, Conversion.id).limit(CHUNK)
        if batch.cursor:
            at = datetime.fromisoformat(batch.cursor[0])
            query = query.where(sa.or_(Conversion.converted_at > at,
                                       sa.and_(Conversion.converted_at == at, Conversion.id > batch.cursor[1])))
        chunk = [(row[0], row[1]) for row in db.execute(query)]
    done = failed = 0
    for _at, conversion_id in chunk:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                _reattribute_one(sessions, tenant, conversion_id)
                done += 1
                break
            except Exception:
                log.exception("reattribution of %s failed (attempt %d of %d)", conversion_id, attempt, ATTEMPTS)
                if attempt == ATTEMPTS:
                    failed += 1
    with sessions.begin() as db:
        stored = db.scalars(sa.select(ReattributionBatch).where(
            ReattributionBatch.account_id == tenant.account_id, ReattributionBatch.id == batch_id,
        ).with_for_update()).one()
        stored.processed += done
        stored.failed_count += failed
        if chunk:
            last_at, last_id = chunk[-1]
            stored.cursor = [last_at.isoformat(), last_id]
        finished = len(chunk) < CHUNK or stored.processed + stored.failed_count >= (stored.total or 0)
        if finished:
            stored.status = "completed"
            stored.total = max(stored.total or 0, stored.processed + stored.failed_count)
            stored.finished_at = datetime.now(UTC)
        return not finished


def active_batches(db: Session, tenant: Tenant) -> list[Progress]:
    """Pending and running batches, oldest first: the "Recalculating attribution" banner (ATT-59)."""
    rows = db.scalars(sa.select(ReattributionBatch).where(
        ReattributionBatch.account_id == tenant.account_id, ReattributionBatch.environment == tenant.environment,
        ReattributionBatch.status.in_(["pending", "running"]),
    ).order_by(ReattributionBatch.created_at))
    return [_progress(b) for b in rows]
