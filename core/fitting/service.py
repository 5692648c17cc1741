"""Fits as a service: build and store them, find the current ones, decide when they are stale (ATT-30, ATT-31).

The conversion processor only ever reads :func:`current_fits`; :func:`run_fit` is what the ``fits`` job runs.
A stored fit never changes, so the process cache is keyed by fit id and needs no invalidation.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.attribution import DATA_DRIVEN, FIT_INSUFFICIENT_DATA, AttributionSettings, ModelFit
from core.attribution.fits import FitResult, fit_markov, fit_shapley
from core.fitting.corpus import CorpusSpec, build_corpus
from core.ids import new_id
from core.settings import load_config
from core.storage.models import AttributionCredit, AttributionFit, Conversion
from core.storage.tenancy import all_tenants
from core.tenant import Tenant

__all__ = ["CurrentFit", "current_fits", "fit_snapshot", "is_stale", "run_fit", "stale_tenants"]

MAX_AGE = timedelta(hours=24)
INSUFFICIENT_RETRY = timedelta(hours=1)
PRUNE_AFTER = timedelta(days=90)
RECENT_CONVERSIONS = timedelta(days=7)


@dataclass(frozen=True)
class CurrentFit:
    id: str
    as_of: datetime
    status: str
    settings: Mapping[str, Any]
    fit: ModelFit  # what the per-conversion step reads


_cache: dict[str, CurrentFit] = {}


def fit_snapshot(settings: AttributionSettings, window_days: int) -> dict[str, Any]:
    """ATT-30 `settings`: the settings a fit depends on; a change to any of them makes the fit stale."""
    return {
        "lookback_days": settings.lookback_days,
        "journey_reset": settings.journey_reset,
        "direct_burst_collapse": settings.direct_burst_collapse,
        "markov_order": settings.markov_order,
        "fit_window_days": window_days,
        "min_conversions": settings.min_conversions,
        "min_journeys": settings.min_journeys,
    }


def _loaded(row: AttributionFit) -> CurrentFit:
    cached = _cache.get(row.id)
    if cached is None:
        values = {c: Decimal(v) for c, v in row.values.items()}
        cached = CurrentFit(row.id, row.as_of, row.status, dict(row.settings), ModelFit(row.status, values))
        _cache[row.id] = cached
    return cached


def current_fits(db: Session, tenant: Tenant) -> dict[str, CurrentFit]:
    """The latest stored fit per data-driven model (ATT-30); a model without one is absent (`fit_pending`).

    One statement gives the current fit ids of every model; a fit is read in full only the first time this process
    sees its id (stored fits never change). Every conversion reads this, so it is one round trip (issue 17)."""
    latest = [
        sa.select(AttributionFit.id)
        .where(AttributionFit.account_id == tenant.account_id, AttributionFit.environment == tenant.environment,
               AttributionFit.model == model)
        .order_by(AttributionFit.as_of.desc(), AttributionFit.id.desc())
        .limit(1)
        .scalar_subquery()
        for model in DATA_DRIVEN
    ]
    found: dict[str, CurrentFit] = {}
    for model, fit_id in zip(DATA_DRIVEN, db.execute(sa.select(*latest)).one(), strict=True):
        if fit_id is None:
            continue
        cached = _cache.get(fit_id)
        if cached is None:
            row = db.get(AttributionFit, (tenant.account_id, fit_id))
            assert row is not None, "the id was just read"
            cached = _loaded(row)
        found[model] = cached
    return found


def is_stale(fits: Mapping[str, CurrentFit], snapshot: Mapping[str, Any], now: datetime) -> bool:
    """ATT-31: none yet, older than 24 h, other settings, or insufficient data and older than 1 h."""
    if any(model not in fits for model in DATA_DRIVEN):
        return True
    for fit in fits.values():
        age = now - fit.as_of
        if age > MAX_AGE or dict(fit.settings) != dict(snapshot):
            return True
        if fit.status == FIT_INSUFFICIENT_DATA and age > INSUFFICIENT_RETRY:
            return True
    return False


def stale_tenants(db: Session, now: datetime) -> list[Tenant]:
    """ATT-31 maintenance: tenants with a conversion in the last 7 days whose fit is stale."""
    recent = db.execute(
        sa.select(Conversion.account_id, Conversion.environment)
        .where(Conversion.converted_at >= now - RECENT_CONVERSIONS, Conversion.converted_at <= now)
        .distinct()
        .order_by(Conversion.account_id, Conversion.environment)
        .execution_options(**all_tenants("ATT-31 maintenance looks for every tenant due a refit"))
    ).all()
    found: list[Tenant] = []
    for account_id, environment in recent:
        tenant = Tenant(account_id, environment)
        config = load_config(db, account_id)
        if not any(m in config.attribution.enabled_models for m in DATA_DRIVEN):
            continue
        if is_stale(current_fits(db, tenant), fit_snapshot(config.attribution, config.fit_window_days), now):
            found.append(tenant)
    return found


def run_fit(db: Session, tenant: Tenant, now: datetime | None = None) -> dict[str, str]:
    """Build the corpus once, fit both models and store them (ATT-31); returns model → new fit id."""
    began = time.perf_counter()
    config = load_config(db, tenant.account_id)
    settings = config.attribution
    as_of = (now or datetime.now(UTC)).replace(microsecond=0)
    spec = CorpusSpec(as_of=as_of, window_days=config.fit_window_days, settings=settings)
    paths = build_corpus(db, tenant, spec)
    results: list[FitResult] = [
        fit_markov(paths, settings.markov_order, settings.min_conversions, settings.min_journeys),
        fit_shapley(paths, settings.min_conversions, settings.min_journeys),
    ]
    duration_ms = int((time.perf_counter() - began) * 1000)
    snapshot = fit_snapshot(settings, config.fit_window_days)
    created = datetime.now(UTC)
    ids: dict[str, str] = {}
    for result in results:
        fit_id = new_id("fit")
        ids[result.model] = fit_id
        db.add(AttributionFit(
            account_id=tenant.account_id, id=fit_id, environment=tenant.environment, model=result.model,
            status=result.status, as_of=as_of, window_start=spec.window_start, settings=snapshot,
            converting_paths=result.converting_paths, total_paths=result.total_paths,
            channels=list(result.channels), values={c: str(v) for c, v in result.values.items()},
            conversion_probability=None if result.conversion_probability is None
            else str(result.conversion_probability),
            excluded_channels=list(result.excluded_channels), duration_ms=duration_ms, created_at=created,
        ))
    db.flush()
    _prune(db, tenant, as_of)
    return ids


def _prune(db: Session, tenant: Tenant, now: datetime) -> None:
    """ATT-30: fits older than 90 days that no credit row references are deleted."""
    referenced = sa.select(AttributionCredit.fit_id).where(
        AttributionCredit.account_id == tenant.account_id, AttributionCredit.fit_id.is_not(None)
    )
    db.execute(
        sa.delete(AttributionFit).where(
            AttributionFit.account_id == tenant.account_id, AttributionFit.environment == tenant.environment,
            AttributionFit.as_of < now - PRUNE_AFTER, AttributionFit.id.not_in(referenced),
        )
    )
