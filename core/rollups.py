"""Daily report rollups, kept exact (dashboard.md DSH-22, quality.md Q-7; docs/dashboard.md DSH-22-D1).

Overview and Channels sum every credit row of their range; at a million conversions that is millions of rows a
page. The rollups hold the same sums per local day (account time zone) × model × channel × currency × conversion
type × funnel, so a page sums a few thousand rows instead.

Exactness comes from dirty-day marks rather than from incremental arithmetic: every flush that adds, changes or
deletes a conversion or a credit row appends a mark for its UTC day (``_mark_changed_days``, a session hook, so
no processor can forget it; bulk deletes call ``mark_days``). Before a report reads, ``refresh`` recomputes the
local days those marks touch from the source tables and deletes the marks it read. A mark is committed with the
change it describes, so a refresh either sees both or neither; marks committed during a refresh stay for the
next one. A change of the account's time zone rebuilds the tenant's rollups.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from core.attribution import MODELS
from core.storage.models import (
    AttributionCredit,
    Conversion,
    ReportConversionDay,
    ReportCreditDay,
    ReportDirtyDay,
    ReportRollupState,
)
from core.storage.tenancy import of_tenant
from core.tenant import Tenant

__all__ = ["NO_FUNNEL", "UNITS", "build_in_background", "mark_days", "needs_build", "refresh"]

UNITS = 10_000  # credits have 4 decimal places: sums are exact in integer units
NO_FUNNEL = ""  # the funnel column of conversions without one (part of the primary key, so not NULL)
_MARKED = "mbuzz.rollups.marked"  # session.info: (account, environment, UTC day) marked in this transaction
_MARK_READ_LIMIT = 50_000  # marks handled per refresh; the rest wait for the next read
SYNC_BUILD_LIMIT = 50_000  # tenants with more conversions are built in the background (a read would wait ~1 min)
_building: set[tuple[str, str]] = set()  # tenants this process is building
_building_lock = threading.Lock()


# ------------------------------------------------------------------------------------------------ marks


def _utc_day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def _add_marks(db: Session, keys: Iterable[tuple[str, str, date]]) -> None:
    marked: set[tuple[str, str, date]] = db.info.setdefault(_MARKED, set())
    for key in keys:
        if key not in marked:
            marked.add(key)
            db.add(ReportDirtyDay(account_id=key[0], environment=key[1], day=key[2]))


def mark_days(db: Session, tenant: Tenant, instants: Iterable[datetime]) -> None:
    """Mark the UTC days of ``instants`` dirty: for bulk statements the session hook cannot see."""
    _add_marks(db, {(tenant.account_id, tenant.environment, _utc_day(at)) for at in instants})


@event.listens_for(Session, "before_flush")
def _mark_changed_days(db: Session, _context: Any, _instances: Any) -> None:
    keys: set[tuple[str, str, date]] = set()
    for obj in (*db.new, *db.dirty, *db.deleted):
        if not isinstance(obj, (Conversion, AttributionCredit)):
            continue
        if obj in db.dirty and not db.is_modified(obj):
            continue
        state: Any = sa.inspect(obj)
        instants = [obj.converted_at, *(state.attrs.converted_at.history.deleted or ())]
        keys.update((obj.account_id, obj.environment, _utc_day(at)) for at in instants if at is not None)
    if keys:
        _add_marks(db, keys)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_soft_rollback")
def _forget_marked(db: Session, *_: Any) -> None:
    """A rolled-back savepoint takes its marks with it: later flushes must write them again."""
    db.info.pop(_MARKED, None)


# ------------------------------------------------------------------------------------------------ refresh


def _start_of(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def _local_days_of(utc_day: date, zone: ZoneInfo) -> set[date]:
    start = datetime.combine(utc_day, time(0), tzinfo=UTC)
    last = start + timedelta(days=1) - timedelta(microseconds=1)
    first_local, last_local = start.astimezone(zone).date(), last.astimezone(zone).date()
    return {first_local + timedelta(days=i) for i in range((last_local - first_local).days + 1)}


def _population(tenant: Tenant, lower: datetime, upper: datetime) -> list[sa.ColumnElement[bool]]:
    """The report population of ``core.reports`` (ATT-55): active, attributed conversions in ``[lower, upper)``."""
    return [of_tenant(Conversion, tenant), Conversion.converted_at >= lower, Conversion.converted_at < upper,
            Conversion.status == "active", Conversion.attribution_status == "complete"]


def _recompute_day(db: Session, tenant: Tenant, day: date, zone: ZoneInfo) -> None:
    lower, upper = _start_of(day, zone), _start_of(day + timedelta(days=1), zone)
    for model in (ReportCreditDay, ReportConversionDay):
        db.execute(sa.delete(model).where(of_tenant(model, tenant), model.day == day))
    fixed = (sa.literal(tenant.account_id, ReportCreditDay.account_id.type),
             sa.literal(tenant.environment, ReportCreditDay.environment.type), sa.literal(day, sa.Date))
    funnel = sa.func.coalesce(Conversion.funnel, NO_FUNNEL)
    credit = AttributionCredit
    credits = (
        sa.select(*fixed, credit.model, credit.channel, credit.currency, Conversion.conversion_type, funnel,
                  sa.func.sum(sa.cast(sa.func.round(credit.credit * UNITS), sa.BigInteger)),
                  sa.func.coalesce(sa.func.sum(credit.revenue_credit_minor), 0), sa.func.count())
        .select_from(credit)
        .join(Conversion, sa.and_(Conversion.account_id == credit.account_id, Conversion.id == credit.conversion_id))
        .where(of_tenant(credit, tenant), credit.model.in_(MODELS),  # lets ix_credits_report range on the time
               credit.converted_at >= lower, credit.converted_at < upper, *_population(tenant, lower, upper))
        .group_by(credit.model, credit.channel, credit.currency, Conversion.conversion_type, funnel)
    )
    db.execute(sa.insert(ReportCreditDay).from_select(
        ["account_id", "environment", "day", "model", "channel", "currency", "conversion_type", "funnel", "units",
         "revenue_minor", "touchpoints"], credits))
    net = sa.func.coalesce(Conversion.net_revenue_minor, Conversion.revenue_minor)
    empty = sa.func.coalesce(Conversion.sessions_analyzed, 0) == 0
    totals = (
        sa.select(*fixed, Conversion.conversion_type, funnel, Conversion.currency, sa.func.count(),
                  sa.func.coalesce(sa.func.sum(net), 0), sa.func.count(net),
                  sa.func.sum(sa.case((empty, 1), else_=0)),
                  sa.func.coalesce(sa.func.sum(sa.case((empty, net), else_=None)), 0),
                  sa.func.count(sa.case((empty, net), else_=None)))
        .where(*_population(tenant, lower, upper))
        .group_by(Conversion.conversion_type, funnel, Conversion.currency)
    )
    db.execute(sa.insert(ReportConversionDay).from_select(
        ["account_id", "environment", "day", "conversion_type", "funnel", "currency", "conversions",
         "revenue_minor", "with_revenue", "unattributed", "unattributed_revenue_minor", "unattributed_with_revenue"],
        totals))


def _days_with_conversions(db: Session, tenant: Tenant, zone: ZoneInfo) -> set[date]:
    if db.get_bind().dialect.name == "postgresql":
        local = sa.cast(sa.func.timezone(zone.key, Conversion.converted_at), sa.Date)
        return set(db.scalars(sa.select(local).where(of_tenant(Conversion, tenant)).distinct()))
    hours = db.scalars(sa.select(sa.func.strftime("%Y-%m-%d %H:00:00", Conversion.converted_at))
                       .where(of_tenant(Conversion, tenant)).distinct())
    days: set[date] = set()
    for hour in hours:
        start = datetime.fromisoformat(hour).replace(tzinfo=UTC)
        days |= {start.astimezone(zone).date(), (start + timedelta(minutes=59, seconds=59)).astimezone(zone).date()}
    return days


def _locked_state(db: Session, tenant: Tenant) -> ReportRollupState:
    from core.processors.context import insert_ignore

    insert_ignore(db, ReportRollupState, {"account_id": tenant.account_id, "environment": tenant.environment})
    state = db.scalar(sa.select(ReportRollupState).where(of_tenant(ReportRollupState, tenant))
                      .with_for_update().execution_options(populate_existing=True))
    assert state is not None
    return state


def refresh(db: Session, tenant: Tenant, tz: str) -> int:
    """Bring the tenant's rollups up to date for time zone ``tz`` and commit; returns the days recomputed.

    Cheap when nothing changed (one indexed read). Concurrent refreshes of one tenant queue on its state row.
    Commits ``db``: call it on a session that holds no other pending work (report reads do).
    """
    def marks() -> list[tuple[int, date]]:
        return [(i, d) for i, d in db.execute(
            sa.select(ReportDirtyDay.id, ReportDirtyDay.day).where(of_tenant(ReportDirtyDay, tenant))
            .order_by(ReportDirtyDay.id).limit(_MARK_READ_LIMIT))]

    state = db.get(ReportRollupState, (tenant.account_id, tenant.environment))
    if state is not None and state.tz == tz and not marks():
        return 0
    zone = ZoneInfo(tz)
    if db.get_bind().dialect.name == "postgresql":
        # A day's recompute groups ~20 credit rows per conversion: sort in memory; JIT costs more than it saves.
        db.execute(sa.text("SET LOCAL work_mem = '64MB'"))
        db.execute(sa.text("SET LOCAL jit = off"))
    state = _locked_state(db, tenant)
    pending = marks()  # read again under the lock: another refresh may have taken them
    if state.tz != tz:
        for model in (ReportCreditDay, ReportConversionDay):
            db.execute(sa.delete(model).where(of_tenant(model, tenant)))
        days = _days_with_conversions(db, tenant, zone)
    else:
        days = set().union(*(_local_days_of(day, zone) for _, day in pending)) if pending else set()
    for day in sorted(days):
        _recompute_day(db, tenant, day, zone)
    ids = [i for i, _ in pending]
    for start in range(0, len(ids), 1000):
        db.execute(sa.delete(ReportDirtyDay).where(of_tenant(ReportDirtyDay, tenant),
                                                   ReportDirtyDay.id.in_(ids[start:start + 1000])))
    state.tz, state.built_at = tz, datetime.now(UTC)
    db.commit()
    return len(days)


# ------------------------------------------------------------------------------------------------ first build


def needs_build(db: Session, tenant: Tenant, tz: str) -> bool:
    """True when the tenant's rollups are missing or bucketed in another zone *and* it holds more conversions
    than a read should wait for: the caller reads the source tables and calls :func:`build_in_background`."""
    state = db.get(ReportRollupState, (tenant.account_id, tenant.environment))
    if state is not None and state.tz == tz:
        return False
    capped = sa.select(Conversion.id).where(of_tenant(Conversion, tenant)).limit(SYNC_BUILD_LIMIT + 1).subquery()
    return int(db.scalar(sa.select(sa.func.count()).select_from(capped)) or 0) > SYNC_BUILD_LIMIT


def build_in_background(engine: sa.Engine, tenant: Tenant, tz: str) -> None:
    """Build the tenant's rollups in a daemon thread, once per process; other processes' builds queue on the
    state row and then find it built."""
    key = (tenant.account_id, tenant.environment)
    with _building_lock:
        if key in _building:
            return
        _building.add(key)

    def build() -> None:
        try:
            with Session(engine, expire_on_commit=False) as db:
                refresh(db, tenant, tz)
        except Exception:  # the next read starts another attempt
            logging.getLogger("mbuzz.rollups").exception("building the report rollups failed")
        finally:
            with _building_lock:
                _building.discard(key)

    threading.Thread(target=build, name=f"mbuzz-rollups-{tenant.account_id}", daemon=True).start()
