"""Session resolution (sessions.md SES-1..SES-13).

One function decides where a touch or an event lands; it runs the R1..R5 steps of SES-7 over the handful of
the visitor's sessions near the item's time, so its cost does not grow with the visitor's history. Sessions and
bindings are plain rows (``core.processors.rows``): created and changed in memory, written set-based.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from core.channels import Traffic, device_type, is_bot
from core.ids import new_id
from core.processors.context import Ctx, links_of_visitor, owner_at
from core.processors.rows import BindingRow, SessionRow, VisitorRow, binding_rows, session_rows
from core.storage.models import Conversion, Session, SessionBinding

WINDOW = timedelta(minutes=30)
MAX_LENGTH = timedelta(hours=24)


def near_window(start: datetime, end: datetime) -> tuple[Any, ...]:
    """Sessions that can take an item timed in [start, end]: active within 30 minutes of it (SES-7).

    No session lasts longer than 24 hours from its start (SES-1), so the start is bounded on both sides too:
    the visitor's index on ``started_at`` is then read over a day and a half, not over the visitor's whole
    history (Q-9: the cost of a batch must not grow with the history stored before it)."""
    return (Session.last_activity_at >= start - WINDOW, Session.started_at >= start - WINDOW - MAX_LENGTH,
            Session.started_at <= end + WINDOW)


@dataclass(slots=True)
class Item:
    """A navigation item or bare event, as session resolution needs it."""

    visitor: VisitorRow
    t: datetime
    kind: str  # touch | event
    traffic: Traffic | None  # None for a bare event (SES-3)
    user_agent: str | None
    fingerprint: str | None
    client_session_id: str | None = None
    country: str | None = None
    postal_code: str | None = None
    fbp: str | None = None
    fbc: str | None = None
    origin: str | None = None  # the connector origin stored on a session it creates (shopify.md SHP-1)

    @property
    def bot(self) -> bool | None:
        """SES-11 class: True bot, False human, None unknown (joins either)."""
        if not self.user_agent:
            return None
        return is_bot(self.user_agent)


def _relation(s: SessionRow, t: datetime) -> str | None:
    if s.started_at <= t < s.last_activity_at:
        return "inside"
    if s.last_activity_at <= t <= s.last_activity_at + WINDOW and t <= s.started_at + MAX_LENGTH:
        return "after"
    if s.started_at - WINDOW <= t < s.started_at and s.last_activity_at - t <= MAX_LENGTH:
        return "before"
    return None


def _session_bot(s: SessionRow) -> bool | None:
    if s.exclusion_reason == "known_bot":
        return True
    return False if s.user_agent else None


def _distance(s: SessionRow, t: datetime) -> timedelta:
    if t < s.started_at:
        return s.started_at - t
    if t > s.last_activity_at:
        return t - s.last_activity_at
    return timedelta(0)


def _best(candidates: list[SessionRow], item: Item) -> SessionRow:
    """SES-7 ties: same fingerprint (null counts as equal), human preferred, nearest, then the later one."""

    def key(s: SessionRow) -> tuple[int, int, timedelta, float]:
        fp_equal = item.fingerprint is None or s.fingerprint is None or s.fingerprint == item.fingerprint
        human = 0 if _session_bot(s) is True else 1
        return (0 if fp_equal else 1, -human, _distance(s, item.t), -s.started_at.timestamp())

    return min(candidates, key=key)


def _compatible_class(s: SessionRow, item_bot: bool | None) -> bool:
    session_bot = _session_bot(s)
    return item_bot is None or session_bot is None or item_bot == session_bot


def resolve(ctx: Ctx, item: Item) -> SessionRow | None:
    """SES-7 R1..R5, then attach or create; returns the session or None (bare event, no session)."""
    t = item.t
    low, high = t - WINDOW, t + WINDOW
    nearby = [s for s in _sessions_of(ctx, item.visitor.id) if s.started_at <= high and s.last_activity_at >= low]
    chosen = _choose(ctx, item, nearby) if nearby else None  # no session near: R1..R3 cannot choose one
    if chosen is not None:
        _attach(ctx, chosen, item)
    elif item.traffic is not None:  # R4
        chosen = _create(ctx, item)
    else:  # R5
        return None
    if item.client_session_id is not None:
        _bind(ctx, item, chosen)
    return chosen


def _choose(ctx: Ctx, item: Item, nearby: list[SessionRow]) -> SessionRow | None:
    """R1..R3 over the visitor's sessions near the item's time."""
    t = item.t
    if item.client_session_id is not None:  # R1
        binding = _binding(ctx, item.visitor.id, item.client_session_id)
        if binding is not None:
            bound = next((s for s in nearby if s.id == binding.session_id), None)
            if bound is not None and _relation(bound, t) is not None:
                return bound
    item_bot = item.bot
    same_class = [s for s in nearby if _compatible_class(s, item_bot)]
    inside = [s for s in same_class if _relation(s, t) == "inside"]  # R2
    if inside:
        return _best(inside, item)
    key = item.traffic.source_key if item.traffic is not None and item.traffic.has_signals else None  # R3
    near = [
        s
        for s in same_class
        if _relation(s, t) in ("after", "before") and (key is None or s.source_key == key)
    ]
    return _best(near, item) if near else None


def _sessions_of(ctx: Ctx, visitor_id: str) -> list[SessionRow]:
    """The visitor's sessions near the batch's time window, read once per batch (core.processors.preload)."""
    cached = ctx.sessions_of.get(visitor_id)
    if cached is None:
        assert ctx.window is not None, "process_batch preloads the window"
        start, end = ctx.window
        cached = session_rows(ctx, Session.visitor_id == visitor_id, *near_window(start, end))
        ctx.sessions_of[visitor_id] = cached
    return cached


def _binding(ctx: Ctx, visitor_id: str, client_session_id: str) -> BindingRow | None:
    key = (visitor_id, client_session_id)
    if visitor_id not in ctx.bindings_loaded and key not in ctx.bindings:
        for row in binding_rows(ctx, SessionBinding.visitor_id == visitor_id,
                                SessionBinding.client_session_id == client_session_id):
            ctx.bindings[key] = row
    return ctx.bindings.get(key)


def _attach(ctx: Ctx, s: SessionRow, item: Item) -> None:
    moved_back = item.t < s.started_at
    s.last_activity_at = max(s.last_activity_at, item.t)
    s.started_at = min(s.started_at, item.t)
    if item.kind == "touch":
        s.touches += 1
    else:
        s.events += 1
    if s.id not in ctx.rows.new_sessions:  # stored: written for the whole batch by one UPDATE
        ctx.rows.changed_sessions[s.id] = s
    # SES-8: empty fields are filled by the first later item that has them; BOT-5 for exclusion.
    if s.user_agent is None and item.user_agent:
        s.user_agent = item.user_agent
        s.device_type = device_type(item.user_agent)
        if is_bot(item.user_agent) and not s.excluded:
            s.excluded = True
            s.exclusion_reason = "known_bot"
    if s.fingerprint is None and item.fingerprint:
        s.fingerprint = item.fingerprint
    if s.country is None and item.country:
        s.country = item.country
    if moved_back:
        _queue_late_session(ctx, s)


def _create(ctx: Ctx, item: Item) -> SessionRow:
    traffic = item.traffic
    assert traffic is not None
    bot = item.bot is True
    exclusion = "known_bot" if bot else traffic.exclusion_reason
    s = SessionRow(
        account_id=ctx.account_id,
        environment=ctx.environment,
        id=new_id("sess", item.t),
        visitor_id=item.visitor.id,
        started_at=item.t,
        last_activity_at=item.t,
        channel=traffic.channel,
        source_key=traffic.source_key,
        utm_source=traffic.utm.get("utm_source"),
        utm_medium=traffic.utm.get("utm_medium"),
        utm_campaign=traffic.utm.get("utm_campaign"),
        utm_content=traffic.utm.get("utm_content"),
        utm_term=traffic.utm.get("utm_term"),
        utm_raw=dict(traffic.utm_raw),
        click_ids=dict(traffic.click_ids),
        referrer_url=traffic.referrer_url,
        referrer_host=_cap(traffic.referrer_host),
        landing_url=traffic.landing_url,
        landing_host=_cap(traffic.landing_host),
        fingerprint=item.fingerprint,
        user_agent=item.user_agent,
        device_type=device_type(item.user_agent),
        country=item.country,
        postal_code=item.postal_code,
        fbp=item.fbp,
        fbc=item.fbc,
        excluded=exclusion is not None,
        exclusion_reason=exclusion,
        touches=1 if item.kind == "touch" else 0,
        events=0 if item.kind == "touch" else 1,
        created_at=item.t,
        origin=item.origin,
    )
    ctx.rows.new_sessions[s.id] = s
    _sessions_of(ctx, item.visitor.id).append(s)
    _queue_late_session(ctx, s)
    return s


def _cap(host: str | None) -> str | None:
    """Hosts are at most 253 characters in DNS; a longer one is junk input and is cut to the column."""
    return host[:255] if host is not None else None


def _bind(ctx: Ctx, item: Item, s: SessionRow) -> None:
    """SES-9: the pair is (re-)bound to the session it resolved to."""
    assert item.client_session_id is not None
    key = (item.visitor.id, item.client_session_id)
    binding = _binding(ctx, *key)
    if binding is None:
        # The visitor's advisory lock is held, so no other transaction binds the same pair meanwhile.
        binding = BindingRow(ctx.account_id, ctx.environment, item.visitor.id, item.client_session_id, s.id, item.t)
        ctx.rows.new_bindings[key] = binding
        ctx.bindings[key] = binding
    elif binding.session_id != s.id:
        binding.session_id = s.id
        binding.bound_at = item.t
        if key not in ctx.rows.new_bindings:
            ctx.rows.changed_bindings[key] = binding


def _queue_late_session(ctx: Ctx, s: SessionRow) -> None:
    """SES-13: a session that appears inside an existing conversion's window re-attributes it."""
    if s.excluded or s.visitor_id in ctx.new_visitors:
        return  # a visitor first seen in this batch has no conversions yet
    if ctx.converters is not None and not ctx.converters:
        return  # preloaded: no visitor or user of the batch has any conversion
    owner = owner_at(links_of_visitor(ctx, s.visitor_id), s.started_at)
    if ctx.converters is not None and s.visitor_id not in ctx.converters and owner not in ctx.converters:
        return  # preloaded: neither the visitor nor its user has any conversion
    lookback = timedelta(days=ctx.config.attribution.lookback_days)
    conditions = [Conversion.visitor_id == s.visitor_id]
    if owner is not None:
        conditions.append(Conversion.user_id == owner)
    rows = ctx.db.scalars(
        sa.select(Conversion.id).where(
            ctx.scoped(Conversion),
            sa.or_(*conditions),
            Conversion.converted_at >= s.started_at,
            Conversion.converted_at <= s.started_at + lookback,
        )
    )
    ctx.reattribute.update(rows)


__all__ = ["Item", "resolve"]
