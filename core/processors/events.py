"""Touches (``POST /sessions``) and events (sessions.md RES-1, SES-3, SES-9; api.md API-51, API-53)."""

from __future__ import annotations

import sqlalchemy as sa

from core.channels import traffic_for
from core.commands import CommandResult, EventCommand, TouchCommand
from core.processors.context import Ctx, claim_batch_key, ensure_visitor
from core.processors.identity import link_implicitly, resolve_user, user_at, visitor_for_user
from core.processors.rows import copy_rows, write_rows
from core.processors.sessions import Item, resolve
from core.storage.models import Event


def process_touch(ctx: Ctx, cmd: TouchCommand) -> CommandResult:
    original = claim_batch_key(ctx, "session", cmd.idempotency_key, cmd.id, cmd.received_at)
    if original is not None:
        return CommandResult(command_id=cmd.id, status="duplicate", result_id=original)
    visitor = ensure_visitor(ctx, cmd.visitor_key, cmd.occurred_at)
    if cmd.user_key is not None:
        user = resolve_user(ctx, cmd.user_key, None, cmd.occurred_at, cmd.origin)
        if user is not None:
            link_implicitly(ctx, visitor, user, cmd.occurred_at)
    traffic = traffic_for(cmd.url, cmd.referrer, cmd.explicit_utm, ctx.config.site)
    session = resolve(
        ctx,
        Item(
            visitor=visitor,
            t=cmd.occurred_at,
            kind="touch",
            traffic=traffic,
            user_agent=cmd.user_agent,
            fingerprint=cmd.fingerprint,
            client_session_id=cmd.client_session_id,
            country=cmd.country,
            postal_code=cmd.postal_code,
            fbp=cmd.fbp,
            fbc=cmd.fbc,
            origin=cmd.origin,
        ),
    )
    return CommandResult(command_id=cmd.id, result_id=session.id if session else None)


def process_event(ctx: Ctx, cmd: EventCommand) -> CommandResult:
    original = claim_batch_key(ctx, "event", cmd.idempotency_key, cmd.id, cmd.received_at)
    if original is not None:
        return CommandResult(command_id=cmd.id, status="duplicate", result_id=original)
    t = cmd.occurred_at
    user = resolve_user(ctx, cmd.user_key, cmd.email_sha256, t, cmd.origin)
    if cmd.visitor_key is not None:
        visitor = ensure_visitor(ctx, cmd.visitor_key, t)
        if user is not None:
            link_implicitly(ctx, visitor, user, t)
    else:
        assert user is not None, "the edge guarantees a visitor or a user"
        visitor = visitor_for_user(ctx, user, t, cmd.fingerprint)
        ensure_visitor(ctx, visitor.visitor_key, t)
    navigation = bool(cmd.url or cmd.referrer)
    traffic = traffic_for(cmd.url, cmd.referrer, cmd.explicit_utm, ctx.config.site) if navigation else None
    session = resolve(
        ctx,
        Item(
            visitor=visitor,
            t=t,
            kind="event",
            traffic=traffic,
            user_agent=cmd.user_agent,
            fingerprint=cmd.fingerprint,
            client_session_id=cmd.client_session_id,
            origin=cmd.origin,
        ),
    )
    # Events never change once written: they go out as one COPY (write_pending_events), values in EVENT_COLUMNS
    # order.
    ctx.pending_events.append((
        ctx.account_id, ctx.environment, cmd.id, cmd.event_type, cmd.funnel, visitor.id,
        session.id if session else None, user.id if user is not None else user_at(ctx, visitor, t),
        cmd.client_session_id, t, cmd.received_at,
        traffic.landing_url if traffic is not None else None, traffic.referrer_url if traffic is not None else None,
        cmd.properties, cmd.idempotency_key, cmd.sdk_name, cmd.sdk_version, cmd.source, cmd.origin,
    ))
    return CommandResult(command_id=cmd.id, result_id=cmd.id)


EVENT_COLUMNS = (
    "account_id", "environment", "id", "event_type", "funnel", "visitor_id", "session_id", "user_id",
    "client_session_id", "occurred_at", "received_at", "url", "referrer", "properties", "idempotency_key",
    "sdk_name", "sdk_version", "source", "origin",
)


def write_pending_events(ctx: Ctx) -> None:
    """Write the batch's visitors, sessions and bindings, flush the unit of work, then the batch's events: COPY on
    PostgreSQL, executemany elsewhere.

    Event ids are unique and a replayed command is skipped before it gets here (``process_batch``), so
    COPY needs no conflict handling.
    """
    write_rows(ctx)
    ctx.db.flush()
    if not ctx.pending_events:
        return
    if ctx.db.get_bind().dialect.name == "postgresql":
        copy_rows(ctx, Event.__table__, EVENT_COLUMNS, ctx.pending_events)
    else:
        ctx.db.execute(sa.insert(Event), [dict(zip(EVENT_COLUMNS, row, strict=True)) for row in ctx.pending_events])
    ctx.pending_events.clear()
