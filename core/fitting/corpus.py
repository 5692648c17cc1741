"""The training corpus of a data-driven fit (attribution.md ATT-23): distinct channel paths with counts.

Two builders, one rule. On PostgreSQL (``sql_corpus``) the database selects and orders every journey's member
sessions and streams them as fixed-width binary rows; numpy cuts and counts the paths without a Python object
per session (Q-5). Only journeys that the direct-burst collapse (ATT-9) or the length cap (ATT-10) could change
become touchpoints and go through ``journey_for``. ``reference_corpus`` builds every journey with the same pure
functions the conversion processor uses; it serves SQLite (the embedded ``make run`` database, small by nature)
and is the oracle the SQL builder is tested against.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.attribution import AttributionSettings, Touchpoint, journey_for
from core.attribution.fits import JourneyPath, merge_paths
from core.attribution.journeys import BURST_WINDOW, DIRECT, MAX_TOUCHPOINTS
from core.channels import CHANNELS
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
#
# PostgreSQL filters and orders the member sessions of every journey (one sort each for the persons and
# the conversions, no temporary table) and streams three fixed-width columns per session as a binary COPY;
# numpy reads that buffer without a Python object per session, trims each person's path to its lookback, and
# the paths are counted as byte strings (one byte per channel). Journeys that the burst collapse (ATT-9) or
# the cap (ATT-10) could change go through ``journey_for``, the rule's one implementation.

_EARLIER = (  # ATT-7's R: the latest other conversion of the same user (else visitor) before this one
    "(SELECT max(o.converted_at) FROM conversions o WHERE o.account_id = %(a)s AND o.environment = %(e)s "
    "AND o.id <> c.id AND o.converted_at < c.converted_at "
    "AND CASE WHEN c.user_id IS NOT NULL THEN o.user_id = c.user_id ELSE o.visitor_id = c.visitor_id END{same})"
)
_RESET = {
    "none": "NULL::timestamptz",
    "any_conversion": _EARLIER.format(same=""),
    "same_type": _EARLIER.format(same=" AND o.conversion_type = c.conversion_type"),
}
_OWNER = (  # ATT-5: the user a session belongs to by its visitor's link intervals
    "LEFT JOIN visitor_links l ON l.account_id = s.account_id AND l.environment = s.environment "
    "AND l.visitor_id = s.visitor_id AND (l.valid_from IS NULL OR l.valid_from <= s.started_at) "
    "AND (l.valid_to IS NULL OR s.started_at < l.valid_to)"
)
# Each member session as (starts a new journey, started_at, channel code): 2 + 8 + 2 bytes of data. Keys and ids
# compare byte-wise (COLLATE "C"), which is ATT-8's code-point order for the session id.
_MEMBER_ROW = """
SELECT (m.j IS DISTINCT FROM lag(m.j) OVER (ORDER BY m.j, m.started_at, m.sid))::int::int2,
       m.started_at, coalesce(array_position(%(channels)s::text[], m.channel::text), 0)::int2
FROM ({members}) m ORDER BY m.j, m.started_at, m.sid
"""
# 2. Non-converting: every qualified session of a person in [F − W, F] after the person's last conversion R; the
# lookback to the person's latest candidate E is applied to the ordered rows (``_trimmed``).
_PERSON_MEMBERS = f"""
SELECT p.person AS j, p.sid, p.started_at, p.channel FROM (
    SELECT coalesce('u' || l.user_id, 'v' || s.visitor_id) COLLATE "C" AS person, s.id COLLATE "C" AS sid,
           s.started_at, s.channel
    FROM sessions s {_OWNER}
    WHERE s.account_id = %(a)s AND s.environment = %(e)s AND NOT s.excluded
      AND s.started_at >= %(w)s AND s.started_at <= %(f)s
) p LEFT JOIN (
    SELECT 'u' || user_id AS person, max(converted_at) AS r FROM conversions
    WHERE account_id = %(a)s AND environment = %(e)s AND user_id IS NOT NULL AND converted_at <= %(f)s
    GROUP BY user_id
    UNION ALL
    SELECT 'v' || visitor_id, max(converted_at) FROM conversions
    WHERE account_id = %(a)s AND environment = %(e)s AND user_id IS NULL AND converted_at <= %(f)s
    GROUP BY visitor_id
) lc ON lc.person = p.person
WHERE lc.r IS NULL OR p.started_at > lc.r
"""
# 1. Converting: each counted conversion's candidates (ATT-4, ATT-5) in [converted_at − L, converted_at] after R,
# found through the visitor's session index.
_CONVERSION_MEMBERS = f"""
SELECT c.id COLLATE "C" AS j, s.id COLLATE "C" AS sid, s.started_at, s.channel
FROM ({{convs}}) c
JOIN sessions s ON s.account_id = %(a)s AND s.environment = %(e)s AND s.visitor_id = c.visitor_id
 AND s.started_at >= c.converted_at - %(l)s AND s.started_at <= c.converted_at AND NOT s.excluded
{_OWNER}
WHERE s.started_at >= %(lo)s AND (c.r IS NULL OR s.started_at > c.r) AND (c.user_id IS NULL OR l.user_id IS NULL)
UNION ALL
SELECT c.id COLLATE "C", s.id COLLATE "C", s.started_at, s.channel
FROM ({{convs}}) c
JOIN visitor_links l ON l.account_id = %(a)s AND l.environment = %(e)s AND l.user_id = c.user_id
JOIN sessions s ON s.account_id = %(a)s AND s.environment = %(e)s AND s.visitor_id = l.visitor_id
 AND s.started_at >= c.converted_at - %(l)s AND s.started_at <= c.converted_at AND NOT s.excluded
 AND (l.valid_from IS NULL OR l.valid_from <= s.started_at) AND (l.valid_to IS NULL OR s.started_at < l.valid_to)
WHERE s.started_at >= %(lo)s AND c.user_id IS NOT NULL AND (c.r IS NULL OR s.started_at > c.r)
"""
_COUNTED_CONVERSIONS = """
SELECT c.id, c.visitor_id, c.user_id, c.converted_at, {reset} AS r FROM conversions c
WHERE c.account_id = %(a)s AND c.environment = %(e)s AND c.status = 'active'
  AND c.inherited_from_conversion_id IS NULL AND c.converted_at >= %(w)s AND c.converted_at <= %(f)s
"""
# A binary COPY row: field count, then length and value of each field (network byte order).
_ROW = np.dtype([("fields", ">i2"), ("n1", ">i4"), ("first", ">i2"), ("n2", ">i4"), ("at", ">i8"),
                 ("n3", ">i4"), ("code", ">i2")])
_COPY_HEADER = 19  # signature (11 bytes), flags (4), header extension length (4, always 0)
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # a binary timestamptz counts microseconds from here
_MICROSECOND = timedelta(microseconds=1)


def sql_corpus(db: Session, tenant: Tenant, spec: CorpusSpec) -> list[JourneyPath]:
    """ATT-23 in PostgreSQL: member sessions selected and ordered in SQL, paths cut and counted in numpy."""
    params: dict[str, Any] = {
        "a": tenant.account_id, "e": tenant.environment, "f": spec.as_of, "w": spec.window_start,
        "l": spec.lookback, "lo": spec.window_start - spec.lookback, "channels": list(CHANNELS),
    }
    # Two large analytic queries: JIT compilation costs more than it saves here, and the sorts fit in memory.
    db.execute(sa.text("SET LOCAL jit = off"))
    db.execute(sa.text("SET LOCAL work_mem = '256MB'"))
    counted = _COUNTED_CONVERSIONS.format(reset=_RESET[spec.settings.journey_reset])
    queries = (_CONVERSION_MEMBERS.format(convs=counted), _PERSON_MEMBERS)
    members = [_member_rows(db, q, params) for q in queries]
    if any((rows["code"] == 0).any() for rows in members):  # a channel outside the taxonomy: code every name
        params["channels"] = _channels(db, params)
        members = [_member_rows(db, q, params) for q in queries]
    names = ("",) + tuple(params["channels"])
    converting = _paths(members[0], names, spec.settings, converted=True)
    trimmed = _trimmed(members[1], spec.lookback)
    return merge_paths(converting + _paths(trimmed, names, spec.settings, converted=False))


def _member_rows(db: Session, members: str, params: dict[str, Any]) -> np.ndarray:
    raw: Any = db.connection().connection.dbapi_connection
    data = bytearray()
    with raw.cursor() as cursor, cursor.copy(
        f"COPY ({_MEMBER_ROW.format(members=members)}) TO STDOUT (FORMAT BINARY)", params
    ) as copy:
        for chunk in copy:
            data += chunk
    rows = np.frombuffer(data, dtype=_ROW, count=(len(data) - _COPY_HEADER - 2) // _ROW.itemsize,
                         offset=_COPY_HEADER)
    if len(rows) and not ((rows["fields"] == 3) & (rows["n1"] == 2) & (rows["n2"] == 8) & (rows["n3"] == 2)).all():
        raise RuntimeError("unexpected COPY row layout in the fit corpus")
    return rows


def _channels(db: Session, params: dict[str, Any]) -> list[str]:
    stored = db.execute(sa.text(
        "SELECT DISTINCT channel FROM sessions WHERE account_id = :a AND environment = :e "
        "AND started_at >= :lo AND started_at <= :f"
    ), params).scalars()
    return list(CHANNELS) + sorted(set(stored) - set(CHANNELS))


def _trimmed(rows: np.ndarray, lookback: timedelta) -> np.ndarray:
    """ATT-23 rule 2: keep each person's rows in [E − L, E], E being the person's latest candidate start."""
    if not len(rows):
        return rows
    first = rows["first"] == 1
    person = np.cumsum(first) - 1
    last = np.append(np.flatnonzero(first)[1:], len(rows)) - 1
    at = rows["at"]
    keep = at >= at[last][person] - lookback // _MICROSECOND
    kept = rows[keep]
    kept_person = person[keep]
    kept["first"] = np.append(True, kept_person[1:] != kept_person[:-1])
    return np.asarray(kept)


def _paths(rows: np.ndarray, names: tuple[str, ...], settings: AttributionSettings,
           converted: bool) -> list[JourneyPath]:
    """One path per journey of ordered member rows, identical ones counted together."""
    if not len(rows):
        return []
    first = rows["first"] == 1
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], len(rows))
    at, code = rows["at"], rows["code"]
    changeable = ends - starts > MAX_TOUCHPOINTS  # ATT-10
    if settings.direct_burst_collapse:  # ATT-9: a direct session close to the one before it
        close = ~first & (code == names.index(DIRECT)) & (at - np.roll(at, 1) <= BURST_WINDOW // _MICROSECOND)
        changeable[np.cumsum(first)[close] - 1] = True
    width = np.dtype(np.uint8 if len(names) <= 256 else np.uint16)  # one byte per channel for CH-1's twelve
    sequences = code.astype(width).tobytes()
    spans = zip(starts.tolist(), ends.tolist(), changeable.tolist(), strict=True)
    counts: Counter[bytes] = Counter()
    paths = []
    for s, e, changes in spans:
        if not changes:
            counts[sequences[s * width.itemsize:e * width.itemsize]] += 1
            continue
        touchpoints = [Touchpoint(f"{i:012d}", names[code[i]], _PG_EPOCH + int(at[i]) * _MICROSECOND)
                       for i in range(s, e)]  # ids that keep the stored order (ATT-8)
        journey = journey_for(touchpoints, touchpoints[-1].at, settings)
        paths.append(JourneyPath(tuple(t.channel for t in journey.touchpoints), converted))
    paths += [JourneyPath(tuple(names[c] for c in np.frombuffer(path, width).tolist()), converted, n)
              for path, n in counts.items()]
    return paths
