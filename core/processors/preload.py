"""Batch preloads: what a batch of touches and events needs, read with one query per kind (a batch of only
conversions and identifies: its visitors and their links).

Session resolution looks at a visitor's sessions near each item, its bindings and links, and whether it has
conversions (SES-13). Reading those per item costs one round trip each; a drain batch of 500 items instead
reads them once for all its visitors over the batch's time window, and resolution works on the loaded rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from core.commands import (
    Command,
    ConversionCommand,
    EventCommand,
    TouchCommand,
)
from core.processors.context import Ctx
from core.processors.rows import binding_rows, session_rows, visitor_rows
from core.processors.sessions import near_window
from core.storage.models import Conversion, IdempotencyKey, Session, SessionBinding, Visitor, VisitorLink

ACTIVITY_WINDOW = timedelta(minutes=30)  # SES-15: a conversion's session was active within 30 min before it


@dataclass
class ConversionSessions:
    """The sessions a run of consecutive conversions reads (issue 17): each of their visitors' sessions that a
    conversion at a time in ``[first, last]`` could count (ATT-4/5: started within the lookback) or be placed in
    (SES-15: started before it and active within 30 min before it), excluded ones included, in one query."""

    first: datetime
    last: datetime
    by_visitor: dict[str, list[Any]] = field(default_factory=dict)  # visitor id -> rows, sorted by start

    def covers(self, visitor_ids: Sequence[str], at: datetime) -> bool:
        return self.first <= at <= self.last and all(v in self.by_visitor for v in visitor_ids)


def preload_conversion_sessions(ctx: Ctx, run: Sequence[ConversionCommand]) -> None:
    """Read the sessions of the run's known visitors once; a conversion the load does not cover (a visitor
    found by its user, an event's time outside the run's) reads its own (``core.processors.attribution``)."""
    times = [item_time(c) for c in run]
    loaded = ConversionSessions(min(times), max(times))
    ids = sorted({ctx.visitors[c.visitor_key].id for c in run if c.visitor_key in ctx.visitors})
    ctx.conversion_sessions = loaded
    if not ids:
        return
    lookback = timedelta(days=ctx.config.attribution.lookback_days)
    rows = ctx.db.execute(
        sa.select(Session.id, Session.channel, Session.started_at, Session.visitor_id, Session.utm_source,
                  Session.utm_medium, Session.utm_campaign, Session.last_activity_at, Session.excluded)
        .where(ctx.scoped(Session), ctx.one_of(Session.visitor_id, ids), Session.started_at <= loaded.last,
               sa.or_(Session.started_at >= loaded.first - lookback,
                      Session.last_activity_at >= loaded.first - ACTIVITY_WINDOW))
        .order_by(Session.visitor_id, Session.started_at, Session.id)
    ).all()
    loaded.by_visitor = {visitor_id: [] for visitor_id in ids}
    for row in rows:
        loaded.by_visitor[row.visitor_id].append(row)


def item_time(command: Command) -> datetime:
    if isinstance(command, ConversionCommand):
        return command.converted_at or command.received_at
    return command.occurred_at


def preload(ctx: Ctx, commands: Sequence[Command]) -> None:
    times = [item_time(c) for c in commands]
    ctx.window = (min(times), max(times))
    keys = sorted({c.visitor_key for c in commands if c.visitor_key is not None})
    if keys:
        for row in visitor_rows(ctx, ctx.one_of(Visitor.visitor_key, keys)):
            ctx.visitors[row.visitor_key] = row
        ctx.unknown_visitors.update(k for k in keys if k not in ctx.visitors)
    ids = [v.id for v in ctx.visitors.values()]
    if ids:
        _load_links(ctx, ids)
    if not any(isinstance(c, TouchCommand | EventCommand) for c in commands):
        return  # conversions and identify read the sessions and conversions they need themselves
    if ids:
        _load_sessions(ctx, ids)
        _load_bindings(ctx, ids, commands)
        _load_converters(ctx, ids)
    else:
        ctx.converters = set()
    _claim_batch_keys(ctx, commands)


def _load_links(ctx: Ctx, ids: list[str]) -> None:
    for visitor_id in ids:
        ctx.links.setdefault(visitor_id, [])
    rows = ctx.db.scalars(
        sa.select(VisitorLink)
        .where(ctx.scoped(VisitorLink), ctx.one_of(VisitorLink.visitor_id, ids))
        .order_by(VisitorLink.linked_at)
    )
    for link in rows:
        ctx.links[link.visitor_id].append(link)


def _load_sessions(ctx: Ctx, ids: list[str]) -> None:
    assert ctx.window is not None
    start, end = ctx.window
    for visitor_id in ids:
        ctx.sessions_of.setdefault(visitor_id, [])
    for s in session_rows(ctx, ctx.one_of(Session.visitor_id, ids), *near_window(start, end)):
        ctx.sessions_of[s.visitor_id].append(s)


def _load_bindings(ctx: Ctx, ids: list[str], commands: Sequence[Command]) -> None:
    client_ids = sorted(
        {c.client_session_id for c in commands if isinstance(c, TouchCommand | EventCommand) and c.client_session_id}
    )
    ctx.bindings_loaded.update(ids)
    if not client_ids:
        return
    for b in binding_rows(ctx, ctx.one_of(SessionBinding.visitor_id, ids),
                          ctx.one_of(SessionBinding.client_session_id, client_ids)):
        ctx.bindings[(b.visitor_id, b.client_session_id)] = b


def _load_converters(ctx: Ctx, ids: list[str]) -> None:
    users = sorted({link.user_id for v in ids for link in ctx.links.get(v, [])})
    found = set(
        ctx.db.scalars(
            sa.select(Conversion.visitor_id)
            .where(ctx.scoped(Conversion), ctx.one_of(Conversion.visitor_id, ids))
            .distinct()
        )
    )
    if users:
        found.update(
            u
            for u in ctx.db.scalars(
                sa.select(Conversion.user_id)
                .where(ctx.scoped(Conversion), ctx.one_of(Conversion.user_id, users))
                .distinct()
            )
            if u is not None
        )
    ctx.converters = found


def _claim_batch_keys(ctx: Ctx, commands: Sequence[Command]) -> None:
    """API-51 for a whole batch: events' and touches' idempotency keys claimed with one INSERT … ON CONFLICT DO
    NOTHING RETURNING per scope, one SELECT for the keys used before (``process_event``/``process_touch`` then
    read ``ctx.batch_keys`` instead of claiming one by one)."""
    for scope, kind in (("event", EventCommand), ("session", TouchCommand)):
        first: dict[str, Command] = {}
        for c in commands:
            if isinstance(c, kind) and c.idempotency_key is not None:
                first.setdefault(c.idempotency_key, c)
        if first:
            _claim_keys(ctx, scope, first)


def _claim_keys(ctx: Ctx, scope: str, first: dict[str, Command]) -> None:
    rows = [
        {"account_id": ctx.account_id, "environment": ctx.environment, "scope": scope, "key": key,
         "result_id": c.id, "created_at": c.received_at}
        for key, c in first.items()
    ]
    dialect = postgresql if ctx.db.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(IdempotencyKey).on_conflict_do_nothing().returning(IdempotencyKey.key)
    claimed = set(ctx.db.scalars(stmt, rows))
    for key in claimed:
        ctx.batch_keys[(scope, key)] = (first[key].id, True)
    known = [k for k in first if k not in claimed]
    if known:
        for key, original in ctx.db.execute(
            sa.select(IdempotencyKey.key, IdempotencyKey.result_id).where(
                IdempotencyKey.account_id == ctx.account_id,
                IdempotencyKey.environment == ctx.environment,
                IdempotencyKey.scope == scope,
                ctx.one_of(IdempotencyKey.key, known),
            )
        ):
            ctx.batch_keys[(scope, key)] = (original, False)


__all__ = ["preload", "ConversionCommand"]
