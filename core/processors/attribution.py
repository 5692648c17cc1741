"""Attribution of one stored conversion: journey (ATT-5..ATT-12), models, credit rows (ATT-47).

The maths is the pure ``core.attribution`` package; this module only reads the candidate sessions and writes
the credit rows, replacing a conversion's rows in the caller's transaction so a re-run is atomic and changes
nothing when nothing changed (ATT-48).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any, cast

import sqlalchemy as sa

from core.attribution import DATA_DRIVEN, MODELS, ModelResult, Touchpoint, attribute, journey_for, revenue_split
from core.fitting.service import CurrentFit, current_fits, fit_snapshot, is_stale
from core.followups import followups_of
from core.processors.context import Ctx, links_of_visitor, owner_at
from core.processors.rows import copy_rows, write_rows
from core.rollups import mark_days
from core.storage.models import AttributionCredit, Conversion, Session, VisitorLink

INHERIT_NOT_FOUND = "inherit_acquisition: no acquisition conversion found; attributed from its own journey"


def _candidates(ctx: Ctx, conv: Conversion, lookback: timedelta) -> list[Touchpoint]:
    """ATT-5: the visitor's sessions, or every session that belonged to the user at its start."""
    start, end = conv.converted_at - lookback, conv.converted_at
    visitor_ids = {conv.visitor_id}
    if conv.user_id is not None:
        visitor_ids.update(
            ctx.db.scalars(
                sa.select(VisitorLink.visitor_id).where(ctx.scoped(VisitorLink), VisitorLink.user_id == conv.user_id)
            )
        )
    sessions = _sessions_between(ctx, sorted(visitor_ids), start, end)
    if conv.user_id is not None:
        links = {v: links_of_visitor(ctx, v) for v in visitor_ids}
        sessions = [s for s in sessions if _owned_by(links[s.visitor_id], s, conv)]
    return [
        Touchpoint(
            session_id=s.id,
            channel=s.channel,
            at=s.started_at,
            visitor_id=s.visitor_id,
            utm_source=s.utm_source,
            utm_medium=s.utm_medium,
            utm_campaign=s.utm_campaign,
        )
        for s in sessions
    ]


def _sessions_between(ctx: Ctx, visitor_ids: list[str], start: datetime, end: datetime) -> list[Any]:
    """The visitors' qualified sessions started in ``[start, end]``: from the run's preload when it covers them,
    else read with the columns a touchpoint needs, as plain rows (issue 17)."""
    loaded = ctx.conversion_sessions
    if loaded is not None and loaded.covers(visitor_ids, end):
        return [s for v in visitor_ids for s in loaded.by_visitor[v]
                if not s.excluded and start <= s.started_at <= end]
    return list(ctx.db.execute(
        sa.select(Session.id, Session.channel, Session.started_at, Session.visitor_id, Session.utm_source,
                  Session.utm_medium, Session.utm_campaign).where(
            ctx.scoped(Session),
            Session.visitor_id.in_(visitor_ids),
            Session.excluded.is_(False),
            Session.started_at >= start,
            Session.started_at <= end,
        )
    ).all())


def _owned_by(links: list[VisitorLink], session: Any, conv: Conversion) -> bool:
    """ATT-5: a session belongs to the user that owned its visitor at its start (or, unowned, to the converting
    visitor)."""
    owner = owner_at(links, session.started_at)
    return owner == conv.user_id or (session.visitor_id == conv.visitor_id and owner is None)


def _reset_point(ctx: Ctx, conv: Conversion) -> datetime | None:
    """ATT-7: the latest earlier conversion of the same user (or visitor) under journey_reset."""
    mode = ctx.config.attribution.journey_reset
    if mode == "none":
        return None
    owner = Conversion.user_id == conv.user_id if conv.user_id else Conversion.visitor_id == conv.visitor_id
    query = sa.select(sa.func.max(Conversion.converted_at)).where(
        ctx.scoped(Conversion), owner, Conversion.id != conv.id, Conversion.converted_at < conv.converted_at
    )
    if mode == "same_type":
        query = query.where(Conversion.conversion_type == conv.conversion_type)
    value = ctx.db.scalar(query)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _acquisition_for(ctx: Ctx, conv: Conversion) -> Conversion | None:
    """ATT-43: the latest acquisition of the same user (else visitor) at or before this conversion."""
    owner = Conversion.user_id == conv.user_id if conv.user_id else Conversion.visitor_id == conv.visitor_id
    return ctx.db.scalars(
        sa.select(Conversion)
        .where(
            ctx.scoped(Conversion),
            owner,
            Conversion.is_acquisition.is_(True),
            Conversion.id != conv.id,
            Conversion.converted_at <= conv.converted_at,
        )
        .order_by(Conversion.converted_at.desc(), Conversion.id.desc())
    ).first()


def _credit_row(ctx: Ctx, conv: Conversion, model: str, now: datetime, **values: Any) -> dict[str, Any]:
    """A credit row of ``conv``: tenant, conversion, currency and time are copied for reports (ATT-47)."""
    return {
        "account_id": ctx.account_id,
        "environment": ctx.environment,
        "conversion_id": conv.id,
        "model": model,
        "currency": conv.currency,
        "converted_at": conv.converted_at,
        "created_at": now,
        "model_config_version": 1,
        "fit_id": None,
        "fallback": None,
        "fallback_reason": None,
        "inherited_from_conversion_id": None,
        **values,
    }


def fits_for(ctx: Ctx, now: datetime) -> dict[str, CurrentFit]:
    """The tenant's current fits, read once per batch; flags the session when a refit is due (ATT-31)."""
    if ctx.fits is None:
        ctx.fits = current_fits(ctx.db, ctx.tenant) if _data_driven_enabled(ctx) else {}
        snapshot = fit_snapshot(ctx.config.attribution, ctx.config.fit_window_days)
        if _data_driven_enabled(ctx) and is_stale(ctx.fits, snapshot, now):
            followups_of(ctx.db).refit = True  # the committer refits after the commit
    return ctx.fits


def _data_driven_enabled(ctx: Ctx) -> bool:
    return any(m in ctx.config.attribution.enabled_models for m in DATA_DRIVEN)


def with_inheritors(ctx: Ctx, ids: set[str]) -> set[str]:
    """ATT-49 (c) / ATT-52: conversions inheriting from any of ``ids`` are re-derived with them."""
    if not ids:
        return ids
    return ids | set(ctx.db.scalars(sa.select(Conversion.id).where(
        ctx.scoped(Conversion), Conversion.inherited_from_conversion_id.in_(sorted(ids)))))


def credit_rows_of(ctx: Ctx, conversion_id: str) -> list[AttributionCredit]:
    return list(
        ctx.db.scalars(
            sa.select(AttributionCredit)
            .where(ctx.scoped(AttributionCredit), AttributionCredit.conversion_id == conversion_id)
            .order_by(AttributionCredit.model, AttributionCredit.touchpoint_index)
        )
    )


@dataclass
class Attributed:
    warnings: list[str]
    rows: list[dict[str, Any]]  # the credit rows written, so the answer needs no read-back


def attribute_conversion(ctx: Ctx, conv: Conversion, new: bool = False, write: bool = True) -> Attributed:
    """Compute and store every enabled model's credits for ``conv``; a ``new`` conversion has none to replace.
    With ``write`` false the rows are only returned: the caller writes them (``write_pending_conversions``)."""
    warnings: list[str] = []
    settings = ctx.config.attribution
    now = datetime.now(UTC)
    if not conv.named_user:  # ATT-5: an unnamed conversion's user is re-derived every time.
        conv.user_id = owner_at(links_of_visitor(ctx, conv.visitor_id), conv.converted_at)
    if not new:
        _delete_credits(ctx, conv.id)
    rows: list[dict[str, Any]] = []
    fallbacks: dict[str, str] = {}
    acquisition = _acquisition_for(ctx, conv) if conv.inherit_acquisition else None
    if conv.inherit_acquisition and acquisition is None:
        warnings.append(INHERIT_NOT_FOUND)
    if acquisition is not None:
        rows = _inherited_rows(ctx, conv, acquisition)
        conv.inherited_from_conversion_id = acquisition.id
        conv.journey_session_ids = list(acquisition.journey_session_ids or [])
        conv.sessions_analyzed = acquisition.sessions_analyzed
        conv.journey_truncated = acquisition.journey_truncated
        fallbacks = dict(acquisition.fallbacks or {})
    else:
        conv.inherited_from_conversion_id = None
        candidates = _candidates(ctx, conv, timedelta(days=settings.lookback_days))
        journey = journey_for(candidates, conv.converted_at, settings, _reset_point(ctx, conv))
        fits = fits_for(ctx, now)
        results = attribute(journey, conv.converted_at, conv.net_revenue_minor, settings,
                            {model: fit.fit for model, fit in fits.items()})
        by_session = {tp.session_id: tp for tp in journey.touchpoints}
        for model in MODELS:
            result: ModelResult | None = results.get(model)
            if result is None:
                continue
            if result.fallback:
                fallbacks[model] = result.fallback
            for r in result.rows:
                tp = by_session[r.session_id]
                rows.append(
                    _credit_row(
                        ctx,
                        conv,
                        model,
                        now,
                        session_id=r.session_id,
                        touchpoint_index=r.touchpoint_index,
                        journey_length=len(journey.touchpoints),
                        channel=r.channel,
                        position=r.position,
                        credit=Decimal(r.credit_units) / 10000,
                        revenue_credit_minor=r.revenue_minor,
                        utm_source=tp.utm_source,
                        utm_medium=tp.utm_medium,
                        utm_campaign=tp.utm_campaign,
                        model_config_version=ctx.config.config_versions.get(model, 1),
                        fit_id=fits[model].id if model in fits else None,
                        fallback=result.fallback,
                        fallback_reason=result.fallback_reason,
                    )
                )
        conv.journey_session_ids = [tp.session_id for tp in journey.touchpoints]
        conv.sessions_analyzed = len(journey.touchpoints)
        conv.journey_truncated = journey.truncated
    if rows and write:
        write_credits(ctx, rows)
    conv.fallbacks = fallbacks
    conv.lookback_days_used = settings.lookback_days
    conv.attribution_status = "complete"
    conv.attributed_at = now
    return Attributed(warnings, rows)


CREDIT_COLUMNS = tuple(c.name for c in cast(sa.Table, AttributionCredit.__table__).columns)
_CREDIT_VALUES = itemgetter(*CREDIT_COLUMNS)  # a credit row's values in COPY order


def write_credits(ctx: Ctx, rows: list[dict[str, Any]]) -> None:
    """A conversion's credit rows: one binary COPY on PostgreSQL (issue 17: an executemany sent one INSERT per
    row, 8 models × the journey's sessions), one executemany elsewhere."""
    table = cast(sa.Table, AttributionCredit.__table__)
    if ctx.db.get_bind().dialect.name == "postgresql":
        copy_rows(ctx, table, CREDIT_COLUMNS, map(_CREDIT_VALUES, rows))
    else:
        ctx.db.execute(sa.insert(table), rows)


def write_pending_conversions(ctx: Ctx) -> None:
    """The batch's new conversions held back so far (issue 17): one INSERT of their rows, then one COPY of their
    credits, after the visitors they name. Called before anything that reads conversions or credits; the report
    rollups' marks are added here, as the session hook does for ORM writes (core.rollups)."""
    if not ctx.pending_conversions:
        return
    write_rows(ctx)
    ctx.db.flush()
    table = cast(sa.Table, Conversion.__table__)
    by_columns: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in ctx.pending_conversions:  # an executemany needs one column list
        by_columns.setdefault(frozenset(row), []).append(row)
    for rows in by_columns.values():
        ctx.db.execute(sa.insert(table), rows)
    mark_days(ctx.db, ctx.tenant, [row["converted_at"] for row in ctx.pending_conversions])
    if ctx.pending_credits:
        write_credits(ctx, ctx.pending_credits)
    ctx.pending_conversions.clear()
    ctx.pending_credits.clear()


def _delete_credits(ctx: Ctx, conversion_id: str) -> None:
    """The conversion's credits, found by primary key (account, conversion). Without planner statistics SQLite
    prefers the report index on (account, environment) and scans the tenant's credits for every conversion (the
    demo seed's profile); comparing the environment through an expression (``environment || ''``) leaves it
    only the primary key. PostgreSQL plans by its statistics and gets the plain comparison."""
    environment: Any = AttributionCredit.environment
    if ctx.db.get_bind().dialect.name == "sqlite":
        environment = environment.op("||")(sa.literal(""))
    ctx.db.execute(sa.delete(AttributionCredit).where(
        AttributionCredit.account_id == ctx.account_id, AttributionCredit.conversion_id == conversion_id,
        environment == ctx.environment))


def _inherited_rows(ctx: Ctx, conv: Conversion, source: Conversion) -> list[dict[str, Any]]:
    """ATT-43: copy the acquisition's rows; revenue credits come from this conversion's own net revenue."""
    now = datetime.now(UTC)
    copied: list[dict[str, Any]] = []
    by_model: dict[str, list[AttributionCredit]] = {}
    for row in credit_rows_of(ctx, source.id):
        by_model.setdefault(row.model, []).append(row)
    for model, model_rows in by_model.items():
        if model not in ctx.config.attribution.enabled_models:
            continue
        model_rows.sort(key=lambda r: r.touchpoint_index)
        units = [int(r.credit * 10000) for r in model_rows]
        total = conv.net_revenue_minor
        if total is None:
            revenue: list[int | None] = [None] * len(model_rows)
        elif model == "participation":
            revenue = [total] * len(model_rows)
        else:
            revenue = list(revenue_split(units, total))
        for row, rev in zip(model_rows, revenue, strict=True):
            copied.append(
                _credit_row(
                    ctx,
                    conv,
                    model,
                    now,
                    session_id=row.session_id,
                    touchpoint_index=row.touchpoint_index,
                    journey_length=row.journey_length,
                    channel=row.channel,
                    position=row.position,
                    credit=row.credit,
                    revenue_credit_minor=rev,
                    utm_source=row.utm_source,
                    utm_medium=row.utm_medium,
                    utm_campaign=row.utm_campaign,
                    model_config_version=row.model_config_version,
                    fit_id=row.fit_id,
                    fallback=row.fallback,
                    fallback_reason=row.fallback_reason,
                    inherited_from_conversion_id=source.id,
                )
            )
    return copied
