"""Privacy erasure (shopify.md SHP-88, SHP-89): forget a person, or everything one connector origin brought.

Forgetting a person keeps the business facts (revenue, times, channel credits, anonymous browsing) and
removes what identifies them: the identity's external id becomes a tombstone nobody can look up, its traits
and e-mail hash go, its visitors are unlinked. Forgetting an origin (a shop that asked to be erased) deletes
every row that origin created; a visitor also seen through another source is kept, without those rows.
"""

from __future__ import annotations

import sqlalchemy as sa

from core.commands import CommandResult, RedactCommand
from core.processors.context import Ctx, claim_key
from core.rollups import mark_days
from core.storage.models import (
    AttributionCredit,
    Conversion,
    ConversionAdjustment,
    Event,
    Session,
    SessionBinding,
    User,
    Visitor,
    VisitorLink,
)

__all__ = ["process_redact"]

SCOPES = ("identity", "origin")


def process_redact(ctx: Ctx, cmd: RedactCommand) -> CommandResult:
    if cmd.scope not in SCOPES:
        return CommandResult(command_id=cmd.id, status="rejected",
                             errors=[f"scope must be identity or origin, got {cmd.scope!r}"])
    original = claim_key(ctx, "redact", cmd.idempotency_key, cmd.id, cmd.received_at)
    if original is not None:
        return CommandResult(command_id=cmd.id, status="duplicate", result_id=original)
    if cmd.scope == "identity":
        _forget_identity(ctx, cmd)
    else:
        _forget_origin(ctx, str(cmd.origin))
    return CommandResult(command_id=cmd.id, result_id=cmd.id)


def _forget_identity(ctx: Ctx, cmd: RedactCommand) -> None:
    db = ctx.db
    users = list(db.scalars(sa.select(User).where(ctx.scoped(User), sa.or_(
        User.user_key == cmd.user_key if cmd.user_key else sa.false(),
        User.email_sha256 == cmd.email_sha256 if cmd.email_sha256 else sa.false()))))
    for user in users:
        if user.user_key == cmd.user_key:
            user.user_key = cmd.tombstone
        user.traits, user.email_sha256, user.phone_sha256 = {}, None, None
    user_ids = [u.id for u in users]
    if user_ids:
        db.execute(sa.delete(VisitorLink).where(ctx.scoped(VisitorLink), VisitorLink.user_id.in_(user_ids)))
    named = sa.or_(Conversion.idempotency_key.in_(cmd.conversion_keys) if cmd.conversion_keys else sa.false(),
                   Conversion.user_id.in_(user_ids) if user_ids else sa.false())
    for conv in db.scalars(sa.select(Conversion).where(ctx.scoped(Conversion), named)):
        props = dict(conv.properties or {})
        for key in ("identifier", "email_sha256", "user_agent", "device_fingerprint"):
            props.pop(key, None)
        conv.properties = props
        if conv.user_id is None and len(user_ids) == 1:
            conv.user_id = user_ids[0]  # points at the tombstone, so the sale stays one person's
    db.flush()


def _forget_origin(ctx: Ctx, origin: str) -> None:
    db = ctx.db
    touched = set(db.scalars(sa.select(Conversion.visitor_id).where(ctx.scoped(Conversion),
                                                                    Conversion.origin == origin)))
    touched |= set(db.scalars(sa.select(Event.visitor_id).where(ctx.scoped(Event), Event.origin == origin)))
    touched |= set(db.scalars(sa.select(Session.visitor_id).where(ctx.scoped(Session), Session.origin == origin)))
    conversions = sa.select(Conversion.id).where(ctx.scoped(Conversion), Conversion.origin == origin)
    mark_days(db, ctx.tenant, db.scalars(sa.select(Conversion.converted_at).where(ctx.scoped(Conversion),
                                                                                Conversion.origin == origin)))
    db.execute(sa.delete(AttributionCredit).where(ctx.scoped(AttributionCredit),
                                                  AttributionCredit.conversion_id.in_(conversions)))
    db.execute(sa.delete(ConversionAdjustment).where(ctx.scoped(ConversionAdjustment),
                                                     ConversionAdjustment.origin == origin))
    db.execute(sa.delete(Conversion).where(ctx.scoped(Conversion), Conversion.origin == origin))
    db.execute(sa.delete(Event).where(ctx.scoped(Event), Event.origin == origin))
    sessions = sa.select(Session.id).where(ctx.scoped(Session), Session.origin == origin)
    db.execute(sa.delete(SessionBinding).where(ctx.scoped(SessionBinding), SessionBinding.session_id.in_(sessions)))
    db.execute(sa.delete(Session).where(ctx.scoped(Session), Session.origin == origin))
    for visitor_id in touched:  # a visitor with nothing left from any source goes too
        remaining = any(db.scalar(sa.select(sa.literal(1)).where(ctx.scoped(model), model.visitor_id == visitor_id)
                                  .limit(1)) for model in (Session, Event, Conversion))
        if not remaining:
            db.execute(sa.delete(VisitorLink).where(ctx.scoped(VisitorLink), VisitorLink.visitor_id == visitor_id))
            db.execute(sa.delete(Visitor).where(ctx.scoped(Visitor), Visitor.id == visitor_id))
    _forget_identities_of(ctx, origin)
    db.flush()


def _forget_identities_of(ctx: Ctx, origin: str) -> None:
    """The identities the origin created go with their visitor links, unless a row from another source still
    names them (that identity is another source's too, as a visitor seen elsewhere is)."""
    db = ctx.db
    for user_id in list(db.scalars(sa.select(User.id).where(ctx.scoped(User), User.origin == origin))):
        if any(db.scalar(sa.select(sa.literal(1)).where(ctx.scoped(model), model.user_id == user_id).limit(1))
               for model in (Conversion, Event)):
            continue
        db.execute(sa.delete(VisitorLink).where(ctx.scoped(VisitorLink), VisitorLink.user_id == user_id))
        db.execute(sa.delete(User).where(ctx.scoped(User), User.id == user_id))
