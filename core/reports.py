"""Read queries behind the data API (api.md §8.6) and the dashboard's reports (dashboard.md), without Flask.

Every query is scoped by the tenant (account and environment) and bounded by a date range of calendar days in
the account's time zone (API-120), turned into a half-open interval of UTC instants so the time indexes are used:
``ix_conversions_time``, ``ix_credits_report``, ``ix_events_time`` and ``ix_sessions_time``. Lists are paginated
by keyset (time, id), never by offset (API-121).

Money stays integer minor units here and credits stay :class:`~decimal.Decimal`; formatting is the caller's.

Stored JSON is answered whatever it holds (quality.md Q-60, docs/api.md API-47-D1): PostgreSQL keeps numbers
exactly, so a row written before the edge turned huge numbers into strings can hold an integer beyond 64 bits,
which a JSON writer such as orjson refuses. :func:`json_safe` turns such numbers into strings on the way out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import aliased, sessionmaker

from core import rollups
from core.attribution import MODELS
from core.channels import CHANNELS
from core.numbers import json_safe
from core.reads import conversion_body
from core.settings import load_config
from core.storage.models import (
    AttributionCredit,
    Conversion,
    Event,
    Rejection,
    ReportConversionDay,
    ReportCreditDay,
    Session,
    SessionBinding,
    User,
    Visitor,
    VisitorLink,
)
from core.storage.tenancy import of_tenant
from core.tenant import Tenant

__all__ = [
    "DATE_RANGES",
    "Keyset",
    "Range",
    "ReportError",
    "attribution_report",
    "conversion_credit_lines",
    "conversion_rows",
    "daily_totals",
    "event_rows",
    "list_conversions",
    "list_events",
    "list_sessions",
    "every_row",
    "json_safe",
    "rejection_of",
    "resolve_range",
    "session_rows",
]

DATE_RANGES: dict[str, int] = {"7d": 7, "30d": 30, "90d": 90, "365d": 365}
DEFAULT_RANGE = "30d"
MSG_DATE_FORMAT = "Invalid date format. Use YYYY-MM-DD."
MSG_DATE_ORDER = "start_date must be on or before end_date"
MSG_BOTH_DATES = "start_date and end_date must both be given (YYYY-MM-DD)"
CLIENT_SESSION_IDS = 10  # API-127: at most the 10 latest client session ids per session
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_FOUR_DP = Decimal("0.0001")
UNITS = rollups.UNITS  # stored credits are numeric(5,4): credit × 10,000 is an exact integer

Keyset = tuple[datetime, str]


class ReportError(ValueError):
    """A bad report parameter; the message is the exact API-120/API-121 text the caller answers with (400)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _shown(value: str) -> str:
    """Values in messages are cut like API-22's ``<v>``: 40 characters, then ``…``."""
    return value if len(value) <= 40 else value[:40] + "…"


# ------------------------------------------------------------------------------------------ date range


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):  # settings validate the name; a bad stored one reads as UTC
        return ZoneInfo("UTC")


def _instant(day: date, tz: str) -> datetime:
    """Local midnight of ``day`` as a UTC instant (clamped at the ends of the calendar)."""
    try:
        return datetime.combine(day, time.min, tzinfo=_zone(tz)).astimezone(UTC)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC) if day.year < 5000 else datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Range:
    """Calendar days ``start..end`` (inclusive) in the time zone ``tz`` (API-120)."""

    start: date
    end: date
    tz: str

    def bounds(self) -> tuple[datetime, datetime | None]:
        """The half-open UTC interval ``[start 00:00, day after end 00:00)``; no upper bound after 9999-12-31."""
        upper = None if self.end == date.max else _instant(self.end + timedelta(days=1), self.tz)
        return _instant(self.start, self.tz), upper

    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    def local_day(self, instant: datetime) -> date:
        return instant.astimezone(_zone(self.tz)).date()


def _parse_date(raw: str) -> date:
    text = raw.strip()
    if not _DATE.fullmatch(text):
        raise ReportError(MSG_DATE_FORMAT)
    try:
        return date.fromisoformat(text)
    except ValueError as exc:  # 2026-02-30
        raise ReportError(MSG_DATE_FORMAT) from exc


def resolve_range(date_range: str | None, start: str | None, end: str | None, tz: str, today: date) -> Range:
    """API-120: explicit ``start``/``end`` win over ``date_range``; ``None`` or ``""`` means absent; default 30d.

    ``today`` is the current date in ``tz``; ``Nd`` is today and the N-1 days before it.
    """
    start, end = start or None, end or None
    if start is not None or end is not None:
        if start is None or end is None:
            raise ReportError(MSG_BOTH_DATES)
        first, last = _parse_date(start), _parse_date(end)
        if first > last:
            raise ReportError(MSG_DATE_ORDER)
        return Range(first, last, tz)
    key = (date_range or "").strip() or DEFAULT_RANGE
    if key not in DATE_RANGES:
        raise ReportError(f"Unknown date_range '{_shown(key)}'. Allowed: {', '.join(DATE_RANGES)}")
    return Range(today - timedelta(days=DATE_RANGES[key] - 1), today, tz)


# ------------------------------------------------------------------------------------------ scoping helpers


def _in_range(column: Any, rng: Range) -> list[sa.ColumnElement[bool]]:
    low, high = rng.bounds()
    conditions: list[sa.ColumnElement[bool]] = [column >= low]
    if high is not None:
        conditions.append(column < high)
    return conditions


def _visitor_ids(tenant: Tenant, visitor_key: str) -> sa.Select[Any]:
    return sa.select(Visitor.id).where(of_tenant(Visitor, tenant), Visitor.visitor_key == visitor_key)


def _user_ids(tenant: Tenant, user_key: str) -> sa.Select[Any]:
    return sa.select(User.id).where(of_tenant(User, tenant), User.user_key == user_key)


def _has_credit_in(tenant: Tenant, channels: Sequence[str]) -> sa.Exists:
    """The conversion has a credit row (any model) in one of ``channels``: its journey touched them."""
    other = aliased(AttributionCredit)
    return sa.exists().where(
        other.account_id == Conversion.account_id,
        other.conversion_id == Conversion.id,
        other.environment == tenant.environment,
        other.channel.in_(list(channels)),
    )


def _page(
    db: DbSession, stmt: sa.Select[Any], at: Any, row_id: Any, limit: int, after: Keyset | None, order: str
) -> tuple[list[Any], Keyset | None]:
    """Keyset pagination on (time, id). The plain bound on the time column keeps the index range scan."""
    descending = order != "asc"
    if after is not None:
        at_key, id_key = after
        if descending:
            stmt = stmt.where(at <= at_key, sa.or_(at < at_key, sa.and_(at == at_key, row_id < id_key)))
        else:
            stmt = stmt.where(at >= at_key, sa.or_(at > at_key, sa.and_(at == at_key, row_id > id_key)))
    ordering = (at.desc(), row_id.desc()) if descending else (at.asc(), row_id.asc())
    rows = list(db.scalars(stmt.order_by(*ordering).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, (getattr(last, at.key), getattr(last, row_id.key))


# ------------------------------------------------------------------------------------------ lists


def list_conversions(
    db: DbSession, tenant: Tenant, rng: Range, filters: dict[str, Any], limit: int, after: Keyset | None,
    order: str,
) -> tuple[list[Conversion], Keyset | None]:
    """API-124: conversions with ``converted_at`` in range, newest first by default.

    ``filters``: ``conversion_type``, ``funnel``, ``visitor_id`` / ``user_id`` (the caller's keys), ``channels``
    (list: any credit in them), ``status`` (``active`` | ``cancelled``; absent = both). Cancelled conversions
    are listed (they are kept, ATT-38); only reports leave them out.
    """
    stmt = sa.select(Conversion).where(of_tenant(Conversion, tenant), *_in_range(Conversion.converted_at, rng))
    if filters.get("conversion_type"):
        stmt = stmt.where(Conversion.conversion_type == filters["conversion_type"])
    if filters.get("funnel"):
        stmt = stmt.where(Conversion.funnel == filters["funnel"])
    if filters.get("visitor_id"):
        stmt = stmt.where(Conversion.visitor_id.in_(_visitor_ids(tenant, filters["visitor_id"])))
    if filters.get("user_id"):
        stmt = stmt.where(Conversion.user_id.in_(_user_ids(tenant, filters["user_id"])))
    if filters.get("channels"):
        stmt = stmt.where(_has_credit_in(tenant, filters["channels"]))
    if filters.get("status"):
        stmt = stmt.where(Conversion.status == filters["status"])
    return _page(db, stmt, Conversion.converted_at, Conversion.id, limit, after, order)


def _not_excluded(tenant: Tenant) -> sa.ColumnElement[bool]:
    """API-123: an event of an excluded session (bots, spam) is left out; events without a session stay."""
    return ~sa.exists().where(
        Session.account_id == Event.account_id,
        Session.id == Event.session_id,
        Session.environment == tenant.environment,
        Session.excluded.is_(True),
    )


def list_events(
    db: DbSession, tenant: Tenant, rng: Range, filters: dict[str, Any], limit: int, after: Keyset | None,
    order: str,
) -> tuple[list[Event], Keyset | None]:
    """API-126: events with ``occurred_at`` in range. ``filters``: ``event_type``, ``funnel``, ``visitor_id``,
    ``user_id``, ``session_id`` (``sess_`` id), ``include_excluded`` (bool)."""
    stmt = sa.select(Event).where(of_tenant(Event, tenant), *_in_range(Event.occurred_at, rng))
    if filters.get("event_type"):
        stmt = stmt.where(Event.event_type == filters["event_type"])
    if filters.get("funnel"):
        stmt = stmt.where(Event.funnel == filters["funnel"])
    if filters.get("visitor_id"):
        stmt = stmt.where(Event.visitor_id.in_(_visitor_ids(tenant, filters["visitor_id"])))
    if filters.get("user_id"):
        stmt = stmt.where(Event.user_id.in_(_user_ids(tenant, filters["user_id"])))
    if filters.get("session_id"):
        stmt = stmt.where(Event.session_id == filters["session_id"])
    if not filters.get("include_excluded"):
        stmt = stmt.where(_not_excluded(tenant))
    return _page(db, stmt, Event.occurred_at, Event.id, limit, after, order)


def _link_at_start(tenant: Tenant) -> sa.ColumnElement[bool]:
    """The visitor link that covers the session's start (sessions.md ID-2: ``[valid_from, valid_to)``)."""
    return sa.and_(
        VisitorLink.account_id == Session.account_id,
        VisitorLink.environment == tenant.environment,
        VisitorLink.visitor_id == Session.visitor_id,
        sa.or_(VisitorLink.valid_from.is_(None), VisitorLink.valid_from <= Session.started_at),
        sa.or_(VisitorLink.valid_to.is_(None), VisitorLink.valid_to > Session.started_at),
    )


def list_sessions(
    db: DbSession, tenant: Tenant, rng: Range, filters: dict[str, Any], limit: int, after: Keyset | None,
    order: str,
) -> tuple[list[Session], Keyset | None]:
    """API-127: sessions with ``started_at`` in range. ``filters``: ``visitor_id``, ``user_id`` (the user the
    visitor belonged to when the session started), ``channels`` (list), ``include_excluded`` (bool)."""
    stmt = sa.select(Session).where(of_tenant(Session, tenant), *_in_range(Session.started_at, rng))
    if filters.get("visitor_id"):
        stmt = stmt.where(Session.visitor_id.in_(_visitor_ids(tenant, filters["visitor_id"])))
    if filters.get("user_id"):
        stmt = stmt.where(sa.exists().where(_link_at_start(tenant),
                                            VisitorLink.user_id.in_(_user_ids(tenant, filters["user_id"]))))
    if filters.get("channels"):
        stmt = stmt.where(Session.channel.in_(list(filters["channels"])))
    if not filters.get("include_excluded"):
        stmt = stmt.where(Session.excluded.is_(False))
    return _page(db, stmt, Session.started_at, Session.id, limit, after, order)


Lister = Callable[[DbSession, Tenant, "Range", dict[str, Any], int, "Keyset | None", str],
                  tuple[list[Any], "Keyset | None"]]
CHUNK = 1000  # rows per read while an export streams


def every_row(sessions: sessionmaker[DbSession], lister: Lister, tenant: Tenant, rng: Range,
              filters: dict[str, Any], order: str,
              lines: Callable[[DbSession, list[Any]], Iterable[Sequence[Any]]]) -> Iterator[Sequence[Any]]:
    """Every row a list matches, by keyset in chunks of ``CHUNK``, each chunk in its own short read (API-122,
    DSH-23): an export streams without holding a transaction open while the client downloads."""
    after: Keyset | None = None
    while True:
        with sessions() as db:
            page, after = lister(db, tenant, rng, filters, CHUNK, after, order)
            chunk = list(lines(db, page))
        yield from chunk
        if after is None:
            return


# ------------------------------------------------------------------------------------------ row shapes


def _keys(db: DbSession, tenant: Tenant, visitor_ids: Iterable[str | None],
          user_ids: Iterable[str | None]) -> tuple[dict[str, str], dict[str, str | None]]:
    """Internal visitor / user ids → the caller's own id strings, one query each."""
    wanted_v = {v for v in visitor_ids if v}
    wanted_u = {u for u in user_ids if u}
    visitors: dict[str, str] = {}
    users: dict[str, str | None] = {}
    if wanted_v:
        visitors = {row.id: row.visitor_key for row in db.execute(
            sa.select(Visitor.id, Visitor.visitor_key).where(of_tenant(Visitor, tenant), Visitor.id.in_(wanted_v)))}
    if wanted_u:
        users = {row.id: row.user_key for row in db.execute(
            sa.select(User.id, User.user_key).where(of_tenant(User, tenant), User.id.in_(wanted_u)))}
    return visitors, users


def _credits_of(db: DbSession, tenant: Tenant, conversion_ids: Sequence[str],
                models: Sequence[str]) -> dict[str, list[AttributionCredit]]:
    found: dict[str, list[AttributionCredit]] = {cid: [] for cid in conversion_ids}
    if not conversion_ids or not models:
        return found
    rows = db.scalars(
        sa.select(AttributionCredit).where(
            of_tenant(AttributionCredit, tenant),
            AttributionCredit.conversion_id.in_(list(conversion_ids)),
            AttributionCredit.model.in_(list(models)),
        )
    )
    for row in rows:
        found[row.conversion_id].append(row)
    rank = {m: i for i, m in enumerate(MODELS)}
    for credits in found.values():
        credits.sort(key=lambda r: (rank.get(r.model, len(rank)), r.touchpoint_index))
    return found


def _credit_dict(row: AttributionCredit) -> dict[str, Any]:
    return {
        "model": row.model, "channel": row.channel, "credit": row.credit,
        "revenue_credit_minor": row.revenue_credit_minor, "session_id": row.session_id,
        "utm_source": row.utm_source, "utm_medium": row.utm_medium, "utm_campaign": row.utm_campaign,
        "touchpoint_index": row.touchpoint_index,
    }


def conversion_rows(db: DbSession, tenant: Tenant, conversions: Sequence[Conversion],
                    models: Sequence[str]) -> list[dict[str, Any]]:
    """API-124 JSON rows: the API-94 object (no ``duplicate``/``warnings``) plus ``status`` (API-124-D1).

    Keys and credits of the whole page are read in three queries, not three per conversion.
    """
    visitors, users = _keys(db, tenant, (c.visitor_id for c in conversions), (c.user_id for c in conversions))
    credits = _credits_of(db, tenant, [c.id for c in conversions], models)
    out = []
    for conv in conversions:
        body = conversion_body(
            db, tenant, conv, models,
            keys=(visitors.get(conv.visitor_id), users.get(conv.user_id or "")),
            credits=[_credit_dict(r) for r in credits[conv.id]],
        )
        body["status"] = conv.status
        out.append(body)
    return out


def conversion_credit_lines(db: DbSession, tenant: Tenant, conversions: Sequence[Conversion],
                            models: Sequence[str]) -> list[dict[str, Any]]:
    """API-124 CSV: one line per credit (models in API-94 order, then journey order); a conversion without
    credits in ``models`` gives one line whose credit fields are None. Money stays minor units."""
    visitors, users = _keys(db, tenant, (c.visitor_id for c in conversions), (c.user_id for c in conversions))
    credits = _credits_of(db, tenant, [c.id for c in conversions], models)
    session_ids = {r.session_id for rows in credits.values() for r in rows}
    started: dict[str, datetime] = {}
    if session_ids:
        started = {row.id: row.started_at for row in db.execute(
            sa.select(Session.id, Session.started_at).where(of_tenant(Session, tenant), Session.id.in_(session_ids)))}
    lines: list[dict[str, Any]] = []
    for conv in conversions:
        head = {
            "conversion": conv,
            "visitor_id": visitors.get(conv.visitor_id),
            "user_id": users.get(conv.user_id or ""),
        }
        rows = credits[conv.id] if conv.attribution_status == "complete" else []
        if not rows:
            lines.append({**head, "credit": None, "session_started_at": None})
        for row in rows:
            lines.append({**head, "credit": row, "session_started_at": started.get(row.session_id)})
    return lines




def event_rows(db: DbSession, tenant: Tenant, events: Sequence[Event]) -> list[dict[str, Any]]:
    """API-126 rows (times as datetimes); ``channel`` is the channel of the event's session."""
    visitors, users = _keys(db, tenant, (e.visitor_id for e in events), (e.user_id for e in events))
    session_ids = {e.session_id for e in events if e.session_id}
    channels: dict[str, str] = {}
    if session_ids:
        channels = {row.id: row.channel for row in db.execute(
            sa.select(Session.id, Session.channel).where(of_tenant(Session, tenant), Session.id.in_(session_ids)))}
    return [
        {
            "id": e.id, "occurred_at": e.occurred_at, "received_at": e.received_at, "event_type": e.event_type,
            "funnel": e.funnel, "visitor_id": visitors.get(e.visitor_id), "user_id": users.get(e.user_id or ""),
            "session_id": e.session_id, "channel": channels.get(e.session_id or ""), "url": e.url,
            "properties": json_safe(e.properties or {}),  # API-47-D1: rows stored before the edge rule too
        }
        for e in events
    ]


def session_rows(db: DbSession, tenant: Tenant, sessions: Sequence[Session]) -> list[dict[str, Any]]:
    """API-127 rows (times as datetimes). ``user_id`` is the user the visitor belonged to when the session
    started; ``client_session_ids`` the 10 latest bound client ids, newest first."""
    ids = [s.id for s in sessions]
    visitors, _ = _keys(db, tenant, (s.visitor_id for s in sessions), ())
    owners: dict[str, str | None] = {}
    bindings: dict[str, list[str]] = {sid: [] for sid in ids}
    if ids:
        owner_rows = db.execute(
            sa.select(Session.id, User.user_key)
            .join(VisitorLink, _link_at_start(tenant))
            .join(User, sa.and_(User.account_id == VisitorLink.account_id, User.id == VisitorLink.user_id))
            .where(of_tenant(Session, tenant), Session.id.in_(ids))
            .order_by(VisitorLink.linked_at)
        )
        owners = {row.id: row.user_key for row in owner_rows}  # the latest covering link wins
        bound = db.execute(
            sa.select(SessionBinding.session_id, SessionBinding.client_session_id)
            .where(of_tenant(SessionBinding, tenant), SessionBinding.session_id.in_(ids))
            .order_by(SessionBinding.bound_at.desc(), SessionBinding.client_session_id)
        )
        for row in bound:
            if len(bindings[row.session_id]) < CLIENT_SESSION_IDS:
                bindings[row.session_id].append(row.client_session_id)
    return [
        {
            "id": s.id, "visitor_id": visitors.get(s.visitor_id), "user_id": owners.get(s.id),
            "started_at": s.started_at, "last_activity_at": s.last_activity_at, "channel": s.channel,
            "utm_source": s.utm_source, "utm_medium": s.utm_medium, "utm_campaign": s.utm_campaign,
            "utm_content": s.utm_content, "utm_term": s.utm_term, "referrer_host": s.referrer_host,
            "landing_url": s.landing_url, "click_ids": s.click_ids or {}, "touches": s.touches,
            "events": s.events, "device_type": s.device_type, "country": s.country, "excluded": s.excluded,
            "exclusion_reason": s.exclusion_reason, "client_session_ids": bindings[s.id],
        }
        for s in sessions
    ]


def rejection_of(db: DbSession, tenant: Tenant, conversion_id: str) -> list[str] | None:
    """API-93: the errors of a conversion rejected after its answer (recorded under its id, API-24), or None."""
    errors = db.scalar(
        sa.select(Rejection.errors)
        .where(of_tenant(Rejection, tenant), Rejection.endpoint == "conversions", Rejection.name == conversion_id)
        .order_by(Rejection.created_at.desc())
        .limit(1)
    )
    return [str(e) for e in errors] if errors is not None else None


# ------------------------------------------------------------------------------------------ reports


def _population(tenant: Tenant, rng: Range, conversion_type: str | None, funnel: str | None,
                channels: Sequence[str] | None) -> list[sa.ColumnElement[bool]]:
    """ATT-55: active, attributed conversions of the tenant in range matching the filters (cancelled and
    still-pending ones are left out, API-128-D1)."""
    conditions = [
        of_tenant(Conversion, tenant),
        *_in_range(Conversion.converted_at, rng),
        Conversion.status == "active",
        Conversion.attribution_status == "complete",
    ]
    if conversion_type:
        conditions.append(Conversion.conversion_type == conversion_type)
    if funnel:
        conditions.append(Conversion.funnel == funnel)
    if channels:
        conditions.append(_has_credit_in(tenant, channels))
    return conditions


def _shown_models(models: Sequence[str] | None) -> list[str]:
    if models is None:
        return list(MODELS)
    return [m for m in MODELS if m in models]


def _share(part: Decimal | int, whole: Decimal | int) -> Decimal:
    if not whole:
        return Decimal("0.0000")
    return (Decimal(part) / Decimal(whole)).quantize(_FOUR_DP, rounding=ROUND_HALF_EVEN)


def _channel_rank(channel: str) -> tuple[int, str]:
    return (CHANNELS.index(channel), "") if channel in CHANNELS else (len(CHANNELS), channel)


def attribution_report(
    db: DbSession,
    tenant: Tenant,
    rng: Range,
    models: list[str] | None = None,
    conversion_type: str | None = None,
    funnel: str | None = None,
    channels: list[str] | None = None,
    *,
    use_rollups: bool = True,
) -> dict[str, Any]:
    """API-128 / ATT-56: one row per (model, channel, currency) with any credit row.

    ``models`` None means every model (callers pass the account's enabled ones); rows follow the API-94 model
    order, then CH-1's channel order, then currency. ``conversions`` is Σ credit (exact, 4 dp), ``revenue_minor``
    Σ revenue credits (net of refunds: ATT-38 re-splits the stored credits), ``conversion_share`` the row's
    credit ÷ the model's credit over all its rows, ``revenue_share`` the row's revenue ÷ the model's revenue in
    that currency. Totals are per population conversion with net revenue (``net_revenue_minor``, else
    ``revenue_minor``); ``unattributed_*`` counts the population's empty journeys (ATT-12).
    """
    shown = _shown_models(models)
    population = _population(tenant, rng, conversion_type, funnel, channels)
    credit = AttributionCredit
    units = sa.func.sum(sa.cast(sa.func.round(credit.credit * UNITS), sa.BigInteger))
    rolled = use_rollups and _rollups_answer(db, tenant, rng, channels)
    grouped: list[Any] = []
    if shown and rolled:
        day = ReportCreditDay
        grouped = list(db.execute(
            sa.select(day.model, day.channel, day.currency, sa.func.sum(day.units).label("units"),
                      sa.func.sum(day.revenue_minor).label("revenue"), sa.func.sum(day.touchpoints).label("rows"))
            .where(of_tenant(day, tenant), day.model.in_(shown), *_rolled_range(day, rng, conversion_type, funnel))
            .group_by(day.model, day.channel, day.currency)
        ))
    elif shown:
        grouped = list(db.execute(
            sa.select(credit.model, credit.channel, credit.currency, units.label("units"),
                      sa.func.sum(credit.revenue_credit_minor).label("revenue"), sa.func.count().label("rows"))
            .select_from(credit)
            .join(Conversion, sa.and_(Conversion.account_id == credit.account_id,
                                      Conversion.id == credit.conversion_id))
            .where(of_tenant(credit, tenant), credit.model.in_(shown), *_in_range(credit.converted_at, rng),
                   *population)
            .group_by(credit.model, credit.channel, credit.currency)
        ))
    model_units: dict[str, int] = {}
    model_revenue: dict[tuple[str, str], int] = {}
    for row in grouped:
        model_units[row.model] = model_units.get(row.model, 0) + int(row.units or 0)
        key = (row.model, row.currency)
        model_revenue[key] = model_revenue.get(key, 0) + int(row.revenue or 0)
    rank = {m: i for i, m in enumerate(MODELS)}
    rows = []
    for row in sorted(grouped, key=lambda r: (rank[r.model], _channel_rank(r.channel), r.currency)):
        row_units, revenue = int(row.units or 0), int(row.revenue or 0)
        rows.append({
            "model": row.model,
            "channel": row.channel,
            "currency": row.currency,
            "conversions": (Decimal(row_units) / UNITS).quantize(_FOUR_DP),
            "revenue_minor": revenue,
            "conversion_share": _share(row_units, model_units[row.model]),
            "revenue_share": _share(revenue, model_revenue[(row.model, row.currency)]),
            "touchpoints": int(row.rows),
        })
    totals = _rolled_totals(db, tenant, rng, conversion_type, funnel) if rolled else _totals(db, population)
    total_conversions = unattributed = 0
    total_revenue: dict[str, int] = {}
    unattributed_revenue: dict[str, int] = {}
    for row in totals:
        total_conversions += int(row.conversions)
        unattributed += int(row.unattributed or 0)
        if row.with_revenue:
            total_revenue[row.currency] = int(row.revenue or 0)
        if row.unattributed_with_revenue:
            unattributed_revenue[row.currency] = int(row.unattributed_revenue or 0)
    return {
        "rows": rows,
        "models": shown,
        "total_conversions": total_conversions,
        "total_revenue_minor": dict(sorted(total_revenue.items())),
        "unattributed_conversions": unattributed,
        "unattributed_revenue_minor": dict(sorted(unattributed_revenue.items())),
    }


def _rollups_answer(db: DbSession, tenant: Tenant, rng: Range, channels: Sequence[str] | None) -> bool:
    """DSH-22: the rollups answer a report unless it filters by channel (a conversion-level condition), asks
    for days in another zone than the account's (the rollups' buckets), or they are still being built for a
    large tenant; they are refreshed first (commits)."""
    if channels or rng.tz != load_config(db, tenant.account_id).timezone:
        return False
    if rollups.needs_build(db, tenant, rng.tz):  # a large tenant's first build: read the sources meanwhile
        rollups.build_in_background(db.get_bind().engine, tenant, rng.tz)
        return False
    rollups.refresh(db, tenant, rng.tz)
    return True


def _rolled_range(day: Any, rng: Range, conversion_type: str | None,
                  funnel: str | None) -> list[sa.ColumnElement[bool]]:
    conditions = [day.day >= rng.start, day.day <= rng.end]
    if conversion_type:
        conditions.append(day.conversion_type == conversion_type)
    if funnel:
        conditions.append(day.funnel == funnel)
    return conditions


def _totals(db: DbSession, population: list[sa.ColumnElement[bool]]) -> Any:
    net = sa.func.coalesce(Conversion.net_revenue_minor, Conversion.revenue_minor)
    empty = sa.func.coalesce(Conversion.sessions_analyzed, 0) == 0
    return db.execute(
        sa.select(
            Conversion.currency,
            sa.func.count().label("conversions"),
            sa.func.sum(net).label("revenue"),
            sa.func.count(net).label("with_revenue"),
            sa.func.sum(sa.case((empty, 1), else_=0)).label("unattributed"),
            sa.func.sum(sa.case((empty, net), else_=None)).label("unattributed_revenue"),
            sa.func.count(sa.case((empty, net), else_=None)).label("unattributed_with_revenue"),
        ).where(*population).group_by(Conversion.currency)
    )


def _rolled_totals(db: DbSession, tenant: Tenant, rng: Range, conversion_type: str | None,
                   funnel: str | None) -> Any:
    day = ReportConversionDay
    return db.execute(
        sa.select(
            day.currency,
            sa.func.sum(day.conversions).label("conversions"),
            sa.func.sum(day.revenue_minor).label("revenue"),
            sa.func.sum(day.with_revenue).label("with_revenue"),
            sa.func.sum(day.unattributed).label("unattributed"),
            sa.func.sum(day.unattributed_revenue_minor).label("unattributed_revenue"),
            sa.func.sum(day.unattributed_with_revenue).label("unattributed_with_revenue"),
        ).where(of_tenant(day, tenant), *_rolled_range(day, rng, conversion_type, funnel)).group_by(day.currency)
    )


def daily_totals(db: DbSession, tenant: Tenant, rng: Range, funnel: str | None = None, *,
                 use_rollups: bool = True) -> list[dict[str, Any]]:
    """Per calendar day of the range (account time zone): the report population's conversion count and net
    revenue per currency (minor units). Days without conversions are present with zeros. ``use_rollups`` False
    reads the source tables (as a report filtered by channel does; the rollups' tests compare the two)."""
    population = _population(tenant, rng, None, funnel, None)
    net = sa.func.coalesce(Conversion.net_revenue_minor, Conversion.revenue_minor)
    per_day: dict[date, dict[str, Any]] = {d: {"day": d, "conversions": 0, "revenue_minor": {}} for d in rng.days()}

    def add(day: date, currency: str, count: int, revenue: int | None) -> None:
        slot = per_day.get(day)
        if slot is None:
            return
        slot["conversions"] += count
        if revenue is not None:
            slot["revenue_minor"][currency] = slot["revenue_minor"].get(currency, 0) + revenue

    if use_rollups and _rollups_answer(db, tenant, rng, None):
        rollup = ReportConversionDay
        rolled = db.execute(
            sa.select(rollup.day, rollup.currency, sa.func.sum(rollup.conversions),
                      sa.func.sum(rollup.revenue_minor), sa.func.sum(rollup.with_revenue))
            .where(of_tenant(rollup, tenant), *_rolled_range(rollup, rng, None, funnel))
            .group_by(rollup.day, rollup.currency)
        )
        for local, currency, count, revenue, with_revenue in rolled:
            add(local, currency, int(count), int(revenue) if with_revenue else None)
    elif db.get_bind().dialect.name == "postgresql":  # the day is computed in the database, one row per day
        local_day = sa.cast(sa.func.timezone(_zone(rng.tz).key, Conversion.converted_at), sa.Date)
        grouped = db.execute(
            sa.select(local_day.label("day"), Conversion.currency, sa.func.count().label("n"),
                      sa.func.sum(net).label("revenue")).where(*population).group_by("day", Conversion.currency)
        )
        for day, currency, count, revenue in grouped:
            add(day, currency, int(count), None if revenue is None else int(revenue))
    else:  # SQLite has no time zones: bucket in Python
        rows = db.execute(sa.select(Conversion.converted_at, Conversion.currency, net).where(*population))
        for at, currency, revenue in rows:
            add(rng.local_day(at), currency, 1, None if revenue is None else int(revenue))
    return [per_day[d] for d in sorted(per_day)]
