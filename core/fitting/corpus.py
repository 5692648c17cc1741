"""The training corpus of a data-driven fit (attribution.md ATT-23): distinct channel paths with counts.

Two builders, one rule. On PostgreSQL the journeys are assembled and counted in SQL (``sql_corpus``): the
database returns one row per distinct path, not one per session. Only journeys that the direct-burst
collapse (ATT-9) or the length cap (ATT-10) could change come back as sessions and go through
``journey_for``. ``reference_corpus`` builds every journey with the same pure functions the conversion
processor uses; it serves SQLite (the embedded ``make run`` database, small by nature) and is the oracle the
SQL builder is tested against.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.attribution import AttributionSettings, Touchpoint, journey_for
from core.attribution.fits import JourneyPath, merge_paths
from core.attribution.journeys import BURST_WINDOW, DIRECT, MAX_TOUCHPOINTS
from core.processors.context import owner_at
from core.storage.models import Conversion, VisitorLink
from core.storage.models import Session as SessionRow
from core.tenant import Tenant

__all__ = ["CorpusSpec", "build_corpus", "reference_corpus", "sql_corpus"]


@dataclass(frozen=True)
class CorpusSpec:
    """F, W and the journey settings of one fit (ATT-23)."""

    as_of: datetime
    window_days: int
    settings: AttributionSettings

    @property
    def window_start(self) -> datetime:
        return self.as_of - timedelta(days=self.window_days)

    @property
    def lookback(self) -> timedelta:
        return timedelta(days=self.settings.lookback_days)


def build_corpus(db: Session, tenant: Tenant, spec: CorpusSpec) -> list[JourneyPath]:
    if db.get_bind().dialect.name == "postgresql":
        return sql_corpus(db, tenant, spec)
    return reference_corpus(db, tenant, spec)


# --- reference builder -----------------------------------------------------------------------------------

def reference_corpus(db: Session, tenant: Tenant, spec: CorpusSpec) -> list[JourneyPath]:
    """ATT-23 exactly as written, one journey at a time."""
    a, e = tenant.account_id, tenant.environment
    f, w, lookback, settings = spec.as_of, spec.window_start, spec.lookback, spec.settings
    links: dict[str, list[VisitorLink]] = defaultdict(list)
    for link in db.scalars(sa.select(VisitorLink).where(VisitorLink.account_id == a, VisitorLink.environment == e)):
        links[link.visitor_id].append(link)
    by_visitor: dict[str, list[tuple[Touchpoint, str | None]]] = defaultdict(list)
    by_user: dict[str, list[Touchpoint]] = defaultdict(list)
    rows = db.execute(
        sa.select(SessionRow.id, SessionRow.visitor_id, SessionRow.channel, SessionRow.started_at).where(
            SessionRow.account_id == a, SessionRow.environment == e, SessionRow.excluded.is_(False),
            SessionRow.started_at >= w - lookback, SessionRow.started_at <= f,
        )
    )
    for session_id, visitor_id, channel, started_at in rows:
        tp = Touchpoint(session_id, channel, started_at, visitor_id)
        owner = owner_at(links[visitor_id], started_at)
        by_visitor[visitor_id].append((tp, owner))
        if owner is not None:
            by_user[owner].append(tp)
    conversions = list(db.scalars(
        sa.select(Conversion).where(Conversion.account_id == a, Conversion.environment == e,
                                    Conversion.converted_at <= f)
    ))
    paths: list[JourneyPath] = []
    for c in conversions:  # 1. converting paths
        if not (w <= c.converted_at and c.status == "active" and c.inherited_from_conversion_id is None):
            continue
        own = by_visitor[c.visitor_id]
        if c.user_id is None:
            candidates = [tp for tp, _ in own]
        else:
            candidates = by_user[c.user_id] + [tp for tp, owner in own if owner is None]
        journey = journey_for(candidates, c.converted_at, settings, _reset_point(conversions, c, settings))
        if journey.touchpoints:
            paths.append(JourneyPath(tuple(t.channel for t in journey.touchpoints), True))
    last_user: dict[str, datetime] = {}
    last_visitor: dict[str, datetime] = {}
    for c in conversions:  # any status or type
        latest = last_user if c.user_id is not None else last_visitor
        key = c.user_id if c.user_id is not None else c.visitor_id
        latest[key] = max(latest.get(key, c.converted_at), c.converted_at)
    persons: list[tuple[list[Touchpoint], datetime | None]] = [
        (tps, last_user.get(user)) for user, tps in by_user.items()
    ]
    persons += [([tp for tp, owner in own if owner is None], last_visitor.get(v)) for v, own in by_visitor.items()]
    for sessions, reset in persons:  # 2. non-converting paths, one per person
        candidates = [t for t in sessions if w <= t.at and (reset is None or t.at > reset)]
        if candidates:
            journey = journey_for(candidates, max(t.at for t in candidates), settings)
            paths.append(JourneyPath(tuple(t.channel for t in journey.touchpoints), False))
    return merge_paths(paths)  # 3.


def _reset_point(conversions: list[Conversion], c: Conversion, settings: AttributionSettings) -> datetime | None:
    """ATT-7's R, as the conversion processor computes it."""
    if settings.journey_reset == "none":
        return None
    earlier = [
        o.converted_at for o in conversions
        if o.id != c.id and o.converted_at < c.converted_at
        and (o.user_id == c.user_id if c.user_id is not None else o.visitor_id == c.visitor_id)
        and (settings.journey_reset != "same_type" or o.conversion_type == c.conversion_type)
    ]
    return max(earlier, default=None)


# --- SQL builder (PostgreSQL) ----------------------------------------------------------------------------

_EARLIER = (  # ATT-7's R: the latest other conversion of the same user (else visitor) before this one
    "(SELECT max(o.converted_at) FROM conversions o WHERE o.account_id = :a AND o.environment = :e "
    "AND o.id <> c.id AND o.converted_at < c.converted_at "
    "AND CASE WHEN c.user_id IS NOT NULL THEN o.user_id = c.user_id ELSE o.visitor_id = c.visitor_id END{same})"
)
_RESET = {
    "none": "NULL::timestamptz",
    "any_conversion": _EARLIER.format(same=""),
    "same_type": _EARLIER.format(same=" AND o.conversion_type = c.conversion_type"),
}

_MEMBERS = """
CREATE TEMPORARY TABLE fit_members ON COMMIT DROP AS
WITH owned AS (
    SELECT s.id AS sid, s.visitor_id, s.channel, s.started_at, l.user_id AS owner
    FROM sessions s
    LEFT JOIN visitor_links l
      ON l.account_id = s.account_id AND l.environment = s.environment AND l.visitor_id = s.visitor_id
     AND (l.valid_from IS NULL OR l.valid_from <= s.started_at) AND (l.valid_to IS NULL OR s.started_at < l.valid_to)
    WHERE s.account_id = :a AND s.environment = :e AND NOT s.excluded
      AND s.started_at >= :lo AND s.started_at <= :f
),
convs AS (
    SELECT c.id, c.visitor_id, c.user_id, c.converted_at, {reset} AS r
    FROM conversions c
    WHERE c.account_id = :a AND c.environment = :e AND c.status = 'active'
      AND c.inherited_from_conversion_id IS NULL AND c.converted_at >= :w AND c.converted_at <= :f
),
converting AS (
    SELECT c.id AS j, o.sid, o.channel, o.started_at
    FROM convs c JOIN owned o ON o.visitor_id = c.visitor_id AND (c.user_id IS NULL OR o.owner IS NULL)
    WHERE o.started_at BETWEEN c.converted_at - :l AND c.converted_at AND (c.r IS NULL OR o.started_at > c.r)
    UNION ALL
    SELECT c.id, o.sid, o.channel, o.started_at
    FROM convs c JOIN owned o ON o.owner = c.user_id
    WHERE c.user_id IS NOT NULL
      AND o.started_at BETWEEN c.converted_at - :l AND c.converted_at AND (c.r IS NULL OR o.started_at > c.r)
),
last_conversion AS (
    SELECT 'u' || user_id AS person, max(converted_at) AS r FROM conversions
    WHERE account_id = :a AND environment = :e AND user_id IS NOT NULL AND converted_at <= :f GROUP BY user_id
    UNION ALL
    SELECT 'v' || visitor_id, max(converted_at) FROM conversions
    WHERE account_id = :a AND environment = :e AND user_id IS NULL AND converted_at <= :f GROUP BY visitor_id
),
candidates AS (
    SELECT p.person, p.sid, p.channel, p.started_at, max(p.started_at) OVER (PARTITION BY p.person) AS latest
    FROM (SELECT coalesce('u' || o.owner, 'v' || o.visitor_id) AS person, o.sid, o.channel, o.started_at
          FROM owned o WHERE o.started_at >= :w) p
    LEFT JOIN last_conversion lc ON lc.person = p.person
    WHERE lc.r IS NULL OR p.started_at > lc.r
),
members AS (
    SELECT j, true AS converted, sid, channel, started_at FROM converting
    UNION ALL
    SELECT person, false, sid, channel, started_at FROM candidates WHERE started_at >= latest - :l
)
SELECT hashtextextended(j, 0) AS h, j, converted, sid, channel, started_at,
       count(*) OVER w AS n,
       (:collapse AND channel = :direct AND started_at - lag(started_at) OVER (w ORDER BY started_at, sid) <= :burst)
       AS close
FROM members
-- the 64-bit hash leads the journey key: sorts compare integers, the text key only breaks hash ties
WINDOW w AS (PARTITION BY hashtextextended(j, 0), j, converted)
"""

# Journeys that neither the burst collapse nor the cap can change are counted as paths in SQL.
_SIMPLE_PATHS = """
SELECT path, converted, count(*) FROM (
    SELECT j, converted, array_agg(channel ORDER BY started_at, sid) AS path
    FROM fit_members GROUP BY h, j, converted
    HAVING NOT coalesce(bool_or(close), false) AND max(n) <= :cap
) journeys GROUP BY path, converted
"""

_OTHER_JOURNEYS = """
SELECT j, converted, sid, channel, started_at FROM fit_members
WHERE (j, converted) IN (SELECT j, converted FROM fit_members GROUP BY j, converted
                         HAVING coalesce(bool_or(close), false) OR max(n) > :cap)
ORDER BY j, converted
"""


def sql_corpus(db: Session, tenant: Tenant, spec: CorpusSpec) -> list[JourneyPath]:
    """ATT-23 in PostgreSQL: journeys assembled with joins and window functions, paths counted by GROUP BY."""
    params: dict[str, Any] = {
        "a": tenant.account_id, "e": tenant.environment, "f": spec.as_of, "w": spec.window_start,
        "lo": spec.window_start - spec.lookback, "l": spec.lookback, "cap": MAX_TOUCHPOINTS,
        "collapse": spec.settings.direct_burst_collapse, "direct": DIRECT, "burst": BURST_WINDOW,
    }
    # One large analytic query: JIT compilation costs more than it saves here, the sorts fit in memory, and
    # hash joins beat merge joins that sort every session to meet a few conversions.
    db.execute(sa.text("SET LOCAL jit = off"))
    db.execute(sa.text("SET LOCAL work_mem = '256MB'"))
    db.execute(sa.text("SET LOCAL enable_mergejoin = off"))
    db.execute(sa.text(_MEMBERS.format(reset=_RESET[spec.settings.journey_reset])), params)
    paths = [JourneyPath(tuple(path), converted, count)
             for path, converted, count in db.execute(sa.text(_SIMPLE_PATHS), params)]
    journeys: dict[tuple[str, bool], list[Touchpoint]] = defaultdict(list)
    for j, converted, sid, channel, started_at in db.execute(sa.text(_OTHER_JOURNEYS), params):
        journeys[(j, converted)].append(Touchpoint(sid, channel, started_at))
    for (_j, converted), touchpoints in journeys.items():
        journey = journey_for(touchpoints, max(t.at for t in touchpoints), spec.settings)
        paths.append(JourneyPath(tuple(t.channel for t in journey.touchpoints), converted))
    db.execute(sa.text("DROP TABLE fit_members"))
    return merge_paths(paths)
