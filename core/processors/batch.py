"""Processing a batch of commands of one tenant, in log order, in one transaction (SES-12, API-63)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.commands import (
    Command,
    CommandResult,
    ConversionCommand,
    EventCommand,
    IdentifyCommand,
    OrderAdjustmentCommand,
    OrderLinkCommand,
    RedactCommand,
    TouchCommand,
)
from core.followups import followups_of
from core.processors.adjustments import process_adjustment
from core.processors.attribution import with_inheritors, write_pending_conversions
from core.processors.context import Ctx, insert_ignore, lock_visitors
from core.processors.conversions import process_conversion
from core.processors.events import process_event, process_touch, write_pending_events
from core.processors.identity import process_identify
from core.processors.order_links import process_order_link
from core.processors.preload import preload, preload_conversion_sessions
from core.processors.redaction import process_redact
from core.reads import conversion_body
from core.reattribution.service import create_batch
from core.settings import load_config
from core.storage.models import Conversion, IdempotencyKey, UsageCounter
from core.tenant import Tenant
from core.usage import month_of


def process_batch(
    db: Session, tenant: Tenant, commands: Sequence[Command], replay_safe: bool = False, can_defer: bool = False
) -> list[CommandResult]:
    """Process ``commands`` in order. ``replay_safe`` (queued mode) skips commands already processed.

    A drain can crash after its commit and before its acknowledgement; the next drain then sees the same
    commands again. Their ids are claimed in this transaction, so a replay is recognised and changes nothing.
    ``can_defer`` lets a conversion answer ``waiting`` (API-93); its claim is released so it runs again later.
    """
    ctx = Ctx(db=db, tenant=tenant, config=load_config(db, tenant.account_id), can_defer=can_defer)
    lock_visitors(ctx, (c.visitor_key for c in commands if c.visitor_key is not None))
    fresh = _claim_commands(ctx, commands) if replay_safe else None
    preload(ctx, commands)
    results: list[CommandResult] = []
    for n, command in enumerate(commands):
        if not isinstance(command, ConversionCommand):
            write_pending_conversions(ctx)  # what follows may read this batch's conversions
            ctx.conversion_sessions = None  # and may add sessions
        if fresh is not None and command.id not in fresh:
            results.append(_replayed(ctx, command))
        elif isinstance(command, EventCommand | TouchCommand):
            results.append(_event_or_touch(ctx, command))
        elif isinstance(command, ConversionCommand):
            write_pending_events(ctx)  # the conversion may name an event or a session of this batch (API-63)
            if ctx.conversion_sessions is None:
                preload_conversion_sessions(ctx, _conversion_run(commands, n))
            results.append(process_conversion(ctx, command))
        elif isinstance(command, IdentifyCommand):
            write_pending_events(ctx)
            results.append(process_identify(ctx, command))
        elif isinstance(command, OrderAdjustmentCommand):
            write_pending_events(ctx)
            results.append(process_adjustment(ctx, command))
        elif isinstance(command, RedactCommand):
            write_pending_events(ctx)
            results.append(process_redact(ctx, command))
        elif isinstance(command, OrderLinkCommand):
            results.append(process_order_link(ctx, command))
        else:  # pragma: no cover - the type union is closed
            raise TypeError(f"unknown command {command!r}")
    write_pending_events(ctx)
    write_pending_conversions(ctx)
    queue_reattribution(ctx, commands)
    charged = sum(
        1
        for command, result in zip(commands, results, strict=True)
        if isinstance(command, EventCommand | TouchCommand) and result.status == "processed"
    )
    if charged and ctx.config.monthly_event_quota is not None:
        charge_usage(ctx, commands[0].received_at, charged)
    waiting = [r.command_id for r in results if r.status == "waiting"]
    if waiting and fresh is not None:  # not processed yet: the retry must not look like a replay
        db.execute(
            sa.delete(IdempotencyKey).where(
                IdempotencyKey.account_id == ctx.account_id,
                IdempotencyKey.environment == ctx.environment,
                IdempotencyKey.scope == "command",
                IdempotencyKey.key.in_(waiting),
            )
        )
    return results


def _conversion_run(commands: Sequence[Command], start: int) -> list[ConversionCommand]:
    """The conversions from ``start`` up to the next command of another kind."""
    run: list[ConversionCommand] = []
    for command in commands[start:]:
        if not isinstance(command, ConversionCommand):
            break
        run.append(command)
    return run


def _event_or_touch(ctx: Ctx, command: EventCommand | TouchCommand) -> CommandResult:
    """Touches and events work on the preloaded rows; their writes go out in one flush at the end. Autoflush is off
    meanwhile, as ``Session.no_autoflush`` would set it, without a context manager per item (issue 16)."""
    db = ctx.db
    autoflush = db.autoflush
    db.autoflush = False
    try:
        return process_event(ctx, command) if isinstance(command, EventCommand) else process_touch(ctx, command)
    finally:
        db.autoflush = autoflush


def _claim_commands(ctx: Ctx, commands: Sequence[Command]) -> set[str]:
    """One INSERT … ON CONFLICT DO NOTHING RETURNING: the ids not processed before.

    On PostgreSQL the ids travel as one array parameter (``unnest``), so the statement is the same small one
    for any batch size: no per-row parameters to render or convert. A claim's ``created_at`` is the batch's
    latest receipt time.
    """
    from sqlalchemy.dialects import sqlite

    if ctx.db.get_bind().dialect.name == "postgresql":
        return set(
            ctx.db.scalars(
                sa.text(
                    "INSERT INTO idempotency_keys (account_id, environment, scope, key, result_id, created_at) "
                    "SELECT :account, :environment, 'command', u.id, u.id, :at "
                    "FROM unnest(CAST(:ids AS text[])) AS u(id) ON CONFLICT DO NOTHING RETURNING key"
                ),
                # One time for the batch: a timestamp array costs more to send than the ids (issue 16's profile).
                {"account": ctx.account_id, "environment": ctx.environment,
                 "ids": [c.id for c in commands], "at": max(c.received_at for c in commands)},
            )
        )
    rows = [
        {"account_id": ctx.account_id, "environment": ctx.environment, "scope": "command", "key": c.id,
         "result_id": c.id, "created_at": c.received_at}
        for c in commands
    ]
    stmt = sqlite.insert(IdempotencyKey).on_conflict_do_nothing().returning(IdempotencyKey.key)
    return set(ctx.db.scalars(stmt, rows))


def _replayed(ctx: Ctx, command: Command) -> CommandResult:
    """The answer of an already processed command, rebuilt from what it stored."""
    write_pending_conversions(ctx)
    if isinstance(command, ConversionCommand):
        conv = ctx.db.scalars(
            sa.select(Conversion).where(ctx.scoped(Conversion), Conversion.id == command.id)
        ).first()
        if conv is not None:
            body = conversion_body(ctx.db, ctx.tenant, conv, ctx.config.attribution.enabled_models)
            body["duplicate"] = False
            return CommandResult(command_id=command.id, status="processed", result_id=conv.id, body=body)
    return CommandResult(command_id=command.id, status="replayed", result_id=command.id)


def charge_usage(ctx: Ctx, at: datetime, count: int) -> None:
    """API-33: duplicates are never charged; the counter row is upserted in the batch's transaction."""
    month = month_of(at)
    insert_ignore(ctx.db, UsageCounter, {"account_id": ctx.account_id, "month": month, "events": 0})
    ctx.db.execute(
        sa.update(UsageCounter)
        .where(UsageCounter.account_id == ctx.account_id, UsageCounter.month == month)
        .values(events=UsageCounter.events + count)
    )


def queue_reattribution(ctx: Ctx, commands: Sequence[Command]) -> None:
    """ATT-49/50/52/54: one batch, written in this transaction, for the conversions this batch's links, late
    sessions and acquisitions touched; the committer starts it (inline: before the answer)."""
    if not ctx.reattribute:
        return
    ids = sorted(with_inheritors(ctx, set(ctx.reattribute)))  # inheritors are re-derived after their acquisition
    ctx.reattribute.clear()
    if any(isinstance(c, IdentifyCommand) for c in commands):
        trigger = "identify"
    elif any(isinstance(c, ConversionCommand) and c.is_acquisition for c in commands):
        trigger = "acquisition_change"
    else:
        trigger = "late_session"
    batch = create_batch(ctx.db, ctx.tenant, trigger, ctx.config.attribution.enabled_models, {"ids": ids})
    followups_of(ctx.db).batches.append(batch.id)
