"""Conversions (sessions.md RES-2, SES-15; api.md API-52, API-92, API-93; attribution.md ATT-36..ATT-46)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from core.commands import CommandResult, ConversionCommand
from core.followups import followups_of
from core.ids import id_time
from core.processors.adjustments import apply_pending_adjustments
from core.processors.attribution import attribute_conversion, write_pending_conversions
from core.processors.context import Ctx, claim_key, ensure_visitor, links_of_visitor, owner_at, used_key
from core.processors.identity import link_implicitly, resolve_user, visitor_for_user
from core.processors.preload import ACTIVITY_WINDOW
from core.processors.rows import VisitorRow
from core.reads import conversion_body
from core.storage.models import Conversion, ConversionAdjustment, Event, Session, User, Visitor

log = logging.getLogger("mbuzz.conversions")


def _session_for(ctx: Ctx, visitor_id: str, converted_at: datetime) -> str | None:
    """SES-15: the latest session with ``converted_at`` in ``[started_at, last_activity_at + 30 min]``."""
    loaded = ctx.conversion_sessions
    if loaded is not None and loaded.covers([visitor_id], converted_at):
        covering = [s for s in loaded.by_visitor[visitor_id]
                    if s.started_at <= converted_at and s.last_activity_at >= converted_at - ACTIVITY_WINDOW]
        return covering[-1].id if covering else None  # rows are ordered by start, then id
    return ctx.db.scalar(
        sa.select(Session.id)
        .where(
            ctx.scoped(Session),
            Session.visitor_id == visitor_id,
            Session.started_at <= converted_at,
            Session.last_activity_at >= converted_at - ACTIVITY_WINDOW,
        )
        .order_by(Session.started_at.desc(), Session.id.desc())
        .limit(1)
    )


def _duplicate(ctx: Ctx, cmd: ConversionCommand, original_id: str) -> CommandResult:
    """API-52: the original conversion and its current attribution; the later payload is ignored."""
    write_pending_conversions(ctx)  # the original may be this batch's
    original = ctx.db.scalars(
        sa.select(Conversion).where(ctx.scoped(Conversion), Conversion.id == original_id)
    ).first()
    assert original is not None, "a claimed key always names a stored conversion"
    body = conversion_body(ctx.db, ctx.tenant, original, ctx.config.attribution.enabled_models)
    body["duplicate"] = True
    return CommandResult(command_id=cmd.id, status="duplicate", result_id=original_id, body=body)


EVENT_WAIT = timedelta(hours=1)
EVENT_CLOCK_SKEW = timedelta(minutes=5)


def event_may_still_arrive(event_id: str, now: datetime) -> bool:
    """API-93: an unknown event id minted less than an hour ago (and at most 5 min ahead) is waited for."""
    minted = id_time(event_id)
    return now - EVENT_WAIT < minted <= now + EVENT_CLOCK_SKEW


def queue_inheritors_of_new_acquisition(ctx: Ctx, acquisition: Conversion) -> None:
    """ATT-52: later conversions of the same user (or visitor) that inherit may now resolve to this one."""
    owner = (Conversion.user_id == acquisition.user_id if acquisition.user_id
             else Conversion.visitor_id == acquisition.visitor_id)
    ctx.reattribute.update(ctx.db.scalars(sa.select(Conversion.id).where(
        ctx.scoped(Conversion), owner, Conversion.inherit_acquisition.is_(True), Conversion.id != acquisition.id,
        Conversion.converted_at >= acquisition.converted_at,
    )))


def _stored_with_attribution(ctx: Ctx, values: dict[str, Any],
                             warnings: list[str]) -> tuple[Conversion, list[dict[str, Any]] | None]:
    """A new conversion's row, written once with its attribution, and the credit rows written (issue 17).

    Attribution is computed and its credits written first, inside a savepoint; the conversion row follows as one
    INSERT that already carries the journey and the status, instead of an INSERT and an UPDATE. ATT-45: if
    attribution fails, the savepoint is rolled back and the conversion is stored ``pending`` from its original
    values, to be attributed again after the commit.
    """
    conv = Conversion(**values)
    savepoint = ctx.db.begin_nested()
    try:
        attributed = attribute_conversion(ctx, conv, new=True)  # a new conversion has no credits to replace
        savepoint.commit()
    except Exception:
        log.exception("attribution of %s failed; stored pending, retried after the commit", conv.id)
        savepoint.rollback()
        conv = Conversion(**values)  # nothing the failed attempt set on it is kept
        conv.warnings = list(warnings)
        followups_of(ctx.db).retry_attribution.append(conv.id)
        ctx.db.add(conv)
        ctx.db.flush()
        return conv, None
    warnings.extend(attributed.warnings)
    conv.warnings = list(warnings)
    ctx.db.add(conv)
    ctx.db.flush()
    return conv, attributed.rows


def _reads_no_other_conversion(ctx: Ctx, cmd: ConversionCommand) -> bool:
    """A conversion whose attribution reads no other conversion (no journey reset, ATT-7; no acquisition to
    inherit or to hand on, ATT-43/ATT-52): its row and credits can wait for the batch's write (issue 17)."""
    return ctx.config.attribution.journey_reset == "none" and not cmd.inherit_acquisition and not cmd.is_acquisition


def _has_pending_adjustments(ctx: Ctx, idempotency_key: str | None) -> bool:
    return idempotency_key is not None and ctx.db.scalar(sa.select(sa.literal(True)).where(
        ctx.scoped(ConversionAdjustment), ConversionAdjustment.conversion_key == idempotency_key,
        ConversionAdjustment.status == "pending").limit(1)) is not None


def _held_with_attribution(ctx: Ctx, values: dict[str, Any],
                           warnings: list[str]) -> tuple[Conversion, list[dict[str, Any]] | None]:
    """A new conversion attributed in memory; ``_hold`` queues its row and credits for the batch's write.

    Nothing is written here, so no savepoint is needed for ATT-45: if attribution fails, the conversion is
    held ``pending`` from its original values and attributed again after the commit."""
    conv = Conversion(**values)
    try:
        attributed = attribute_conversion(ctx, conv, new=True, write=False)
    except Exception:
        log.exception("attribution of %s failed; stored pending, retried after the commit", conv.id)
        conv = Conversion(**values)
        followups_of(ctx.db).retry_attribution.append(conv.id)
        return conv, None
    warnings.extend(attributed.warnings)
    return conv, attributed.rows


def _hold(ctx: Ctx, conv: Conversion, credits: list[dict[str, Any]] | None) -> None:
    state = sa.inspect(conv)
    ctx.pending_conversions.append({c.key: state.dict[c.key] for c in state.mapper.column_attrs if c.key in state.dict})
    ctx.pending_credits.extend(credits or ())


def process_conversion(ctx: Ctx, cmd: ConversionCommand) -> CommandResult:
    if cmd.idempotency_key is not None:
        known = used_key(ctx, "conversion", cmd.idempotency_key)
        if known is not None:
            return _duplicate(ctx, cmd, known)
    warnings = list(cmd.warnings)
    event = _event_of(ctx, cmd, warnings)
    if isinstance(event, CommandResult):
        return event
    if cmd.idempotency_key is not None:
        raced = claim_key(ctx, "conversion", cmd.idempotency_key, cmd.id, cmd.received_at)
        if raced is not None:
            return _duplicate(ctx, cmd, raced)
    converted_at = cmd.converted_at or (event.occurred_at if event is not None else cmd.received_at)
    user = resolve_user(ctx, cmd.user_key, cmd.email_sha256, converted_at, cmd.origin)
    visitor = _visitor_of(ctx, cmd, event, user, converted_at)
    if user is not None:
        link_implicitly(ctx, visitor, user, converted_at)
    values = _conversion_values(ctx, cmd, event, user, visitor, converted_at, warnings)
    held = _reads_no_other_conversion(ctx, cmd) and not _has_pending_adjustments(ctx, cmd.idempotency_key)
    conv, credits = _stored(ctx, values, warnings, held)
    user_key = cmd.user_key if user is not None and conv.user_id == user.id else None
    answer_keys = (visitor.visitor_key, user_key) if conv.user_id is None or user_key is not None else None
    body = conversion_body(ctx.db, ctx.tenant, conv, ctx.config.attribution.enabled_models, answer_keys, credits)
    body["duplicate"] = False
    if warnings:
        body["warnings"] = warnings
    return CommandResult(command_id=cmd.id, result_id=conv.id, body=body, warnings=warnings)


def _event_of(ctx: Ctx, cmd: ConversionCommand, warnings: list[str]) -> Event | CommandResult | None:
    """The event the conversion names (API-92), None when it names none or names a missing one it can do
    without (a warning says which key was used), or the waiting/rejected result when it cannot (API-93)."""
    if cmd.event_id is None:
        return None
    event = ctx.db.scalars(sa.select(Event).where(ctx.scoped(Event), Event.id == cmd.event_id)).first()
    if event is not None:
        return event
    named = next(
        (f for f, v in (("visitor_id", cmd.visitor_key), ("user_id", cmd.user_key)) if v is not None),
        "identifier" if cmd.email_sha256 else None,
    )
    if named is not None:
        warnings.append(f"event_id {cmd.event_id} not found; used {named}")
        return None
    if ctx.can_defer and event_may_still_arrive(cmd.event_id, datetime.now(UTC)):
        # API-93: a fresh id's event may still be in flight; the drain retries until it is 1 h old.
        return CommandResult(command_id=cmd.id, status="waiting", result_id=cmd.id)
    # In inline mode every accepted event is already committed, so it never arrives later.
    return CommandResult(command_id=cmd.id, status="rejected", errors=[f"event_id {cmd.event_id} not found"])


def _visitor_of(ctx: Ctx, cmd: ConversionCommand, event: Event | None, user: User | None,
                converted_at: datetime) -> VisitorRow:
    """The event's visitor, else the one sent, else the user's (the edge guarantees one of the three)."""
    if event is not None:
        found = ctx.db.scalars(sa.select(Visitor).where(ctx.scoped(Visitor), Visitor.id == event.visitor_id)).first()
        assert found is not None
        return ensure_visitor(ctx, found.visitor_key, converted_at)
    if cmd.visitor_key is not None:
        return ensure_visitor(ctx, cmd.visitor_key, converted_at)
    assert user is not None, "the edge guarantees an event, a visitor or a user"
    return visitor_for_user(ctx, user, converted_at, cmd.fingerprint)


def _conversion_values(ctx: Ctx, cmd: ConversionCommand, event: Event | None, user: User | None,
                       visitor: VisitorRow, converted_at: datetime, warnings: list[str]) -> dict[str, Any]:
    """The new conversion's row, attribution still pending."""
    user_id = user.id if user is not None else None
    if user_id is None and event is not None:
        user_id = event.user_id
    if user_id is None:
        user_id = owner_at(links_of_visitor(ctx, visitor.id), converted_at)
    return dict(
        account_id=ctx.account_id,
        environment=ctx.environment,
        id=cmd.id,
        conversion_type=cmd.conversion_type,
        funnel=cmd.funnel,
        visitor_id=visitor.id,
        user_id=user_id,
        named_user=user is not None or (event is not None and event.user_id is not None),
        event_id=event.id if event is not None else None,
        converted_at=converted_at,
        converted_at_source="timestamp" if cmd.converted_at else ("event" if event is not None else "received"),
        received_at=cmd.received_at,
        revenue_minor=cmd.revenue_minor,
        refunded_minor=0,
        net_revenue_minor=cmd.revenue_minor,
        currency=cmd.currency or ctx.config.currency,
        status="active",
        is_acquisition=cmd.is_acquisition,
        inherit_acquisition=cmd.inherit_acquisition,
        properties=cmd.properties,
        idempotency_key=cmd.idempotency_key,
        attribution_status="pending",
        fallbacks={},
        warnings=warnings,
        source=cmd.source,
        origin=cmd.origin,
        session_id=event.session_id if event is not None else _session_for(ctx, visitor.id, converted_at),
    )


def _stored(ctx: Ctx, values: dict[str, Any], warnings: list[str],
            held: bool) -> tuple[Conversion, list[dict[str, Any]] | None]:
    """The conversion attributed, then held for the batch's write (ATT-45-D2) or written at once."""
    if held:
        conv, credits = _held_with_attribution(ctx, values, warnings)
    else:
        write_pending_conversions(ctx)
        conv, credits = _stored_with_attribution(ctx, values, warnings)
    if ctx.converters is not None:
        ctx.converters.update(x for x in (conv.visitor_id, conv.user_id) if x is not None)
    ctx.reattribute.discard(conv.id)
    if not held and apply_pending_adjustments(ctx, conv):
        credits = None  # revenue credits were re-split: the answer reads the stored rows
    if conv.is_acquisition:
        queue_inheritors_of_new_acquisition(ctx, conv)
    conv.warnings = list(warnings)
    if held:
        _hold(ctx, conv, credits)
    return conv, credits
