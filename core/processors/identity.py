"""Identity: users, visitor links, traits (sessions.md ID-1..ID-14, VIS-4)."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from core.commands import CommandResult, IdentifyCommand
from core.processors.attribution import with_inheritors, write_pending_conversions
from core.processors.context import (
    Ctx,
    add_link,
    claim_key,
    current_link,
    ensure_user,
    ensure_visitor,
    get_visitor,
    links_of_visitor,
    owner_at,
    synthetic_visitor_key,
    user_for_email,
)
from core.processors.rows import VisitorRow, write_rows
from core.storage.models import Conversion, Session, User, Visitor, VisitorLink

MAX_STORED_TRAITS = 100
MAX_STORED_TRAIT_BYTES = 32768


def link_implicitly(ctx: Ctx, visitor: VisitorRow, user: User, at: datetime) -> bool:
    """ID-3: an item naming both links them only while the visitor has no link at all."""
    links = links_of_visitor(ctx, visitor.id)
    if links:
        return False
    add_link(ctx, visitor, user, at, first=True)
    queue_reattribution_for_link(ctx, visitor, user)
    return True


def user_at(ctx: Ctx, visitor: VisitorRow, t: datetime) -> str | None:
    return owner_at(links_of_visitor(ctx, visitor.id), t)


def visitor_for_user(ctx: Ctx, user: User, t: datetime, fingerprint: str | None) -> VisitorRow:
    """VIS-4: pick the user's visitor for an item that names only the user."""
    write_rows(ctx)  # the queries below must see this batch's visitors, sessions and links
    ctx.db.flush()
    keys = list(
        ctx.db.scalars(
            sa.select(Visitor.visitor_key)
            .join(
                VisitorLink,
                sa.and_(
                    VisitorLink.account_id == Visitor.account_id,
                    VisitorLink.visitor_id == Visitor.id,
                ),
            )
            .where(
                ctx.scoped(VisitorLink),
                VisitorLink.user_id == user.id,
                VisitorLink.valid_to.is_(None),
            )
            .order_by(Visitor.last_seen_at.desc(), Visitor.id.desc())
        )
    )
    visitors = [row for row in (get_visitor(ctx, key) for key in keys) if row is not None]
    if not visitors:
        key = synthetic_visitor_key(user.user_key or user.id)
        visitor = ensure_visitor(ctx, key, t)
        if not links_of_visitor(ctx, visitor.id):
            add_link(ctx, visitor, user, t, first=True)
        return visitor
    if fingerprint is not None and len(visitors) > 1:
        covering = ctx.db.scalars(
            sa.select(Session.visitor_id).where(
                ctx.scoped(Session),
                Session.visitor_id.in_([v.id for v in visitors]),
                Session.started_at <= t + timedelta(minutes=30),
                Session.last_activity_at >= t - timedelta(minutes=30),
                Session.fingerprint == fingerprint,
            )
        ).first()
        for visitor in visitors:
            if visitor.id == covering:
                return visitor
    return visitors[0]


def queue_reattribution_for_link(ctx: Ctx, visitor: VisitorRow, user: User) -> None:
    """ID-14.1: the visitor's own conversions, and the user's conversions whose window holds its sessions."""
    write_pending_conversions(ctx)  # this batch's conversions are among them
    own = ctx.db.scalars(sa.select(Conversion.id).where(ctx.scoped(Conversion), Conversion.visitor_id == visitor.id))
    ctx.reattribute.update(own)
    starts = list(
        ctx.db.scalars(
            sa.select(Session.started_at).where(
                ctx.scoped(Session), Session.visitor_id == visitor.id, Session.excluded.is_(False)
            )
        )
    )
    if not starts:
        return
    lookback = timedelta(days=ctx.config.attribution.lookback_days)
    rows = ctx.db.execute(
        sa.select(Conversion.id, Conversion.converted_at).where(
            ctx.scoped(Conversion), Conversion.user_id == user.id
        )
    )
    for conv_id, converted_at in rows:
        if any(converted_at - lookback <= s <= converted_at for s in starts):
            ctx.reattribute.add(conv_id)


def merge_traits(user: User, traits: dict[str, Any], deleted: list[str], warnings: list[str]) -> None:
    """ID-5 top-level merge with the stored caps of API-35."""
    stored = dict(user.traits or {})
    for key in deleted:
        stored.pop(key, None)
    dropped = 0
    for key, value in traits.items():
        if key not in stored:
            if len(stored) >= MAX_STORED_TRAITS:
                dropped += 1
                continue
            candidate = {**stored, key: value}
            if len(orjson.dumps(candidate)) > MAX_STORED_TRAIT_BYTES:
                dropped += 1
                continue
        stored[key] = value
    if dropped:
        warnings.append(f"traits: stored traits are full; dropped {dropped} new keys")
    user.traits = stored


def merge_provisional_users(ctx: Ctx, user: User) -> None:
    """ID-10: provisional users sharing the real user's email hash are folded into it."""
    if user.email_sha256 is None or user.user_key is None:
        return
    provisional = list(
        ctx.db.scalars(
            sa.select(User).where(
                ctx.scoped(User), User.email_sha256 == user.email_sha256, User.user_key.is_(None)
            )
        )
    )
    for other in provisional:
        ctx.db.execute(
            sa.update(VisitorLink)
            .where(ctx.scoped(VisitorLink), VisitorLink.user_id == other.id)
            .values(user_id=user.id)
        )
        moved = list(
            ctx.db.scalars(sa.select(Conversion.id).where(ctx.scoped(Conversion), Conversion.user_id == other.id))
        )
        ctx.db.execute(
            sa.update(Conversion)
            .where(ctx.scoped(Conversion), Conversion.user_id == other.id)
            .values(user_id=user.id)
        )
        ctx.reattribute.update(moved)
        ctx.reattribute.update(
            ctx.db.scalars(sa.select(Conversion.id).where(ctx.scoped(Conversion), Conversion.user_id == user.id))
        )
        user.traits = {**(other.traits or {}), **(user.traits or {})}
        ctx.db.delete(other)
    if provisional:
        ctx.links.clear()  # the bulk UPDATE above re-owned links behind the batch cache
    ctx.db.flush()


_PHONE_STRIP = re.compile(r"[\s\-.()]")
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def phone_e164(raw: str, default_country_code: str | None) -> str | None:
    """ID-7: E.164 normalization; None when the number cannot be made valid."""
    number = _PHONE_STRIP.sub("", raw.strip())
    if number.startswith("00"):
        number = "+" + number[2:]
    if not number.startswith("+"):
        if not default_country_code:
            return None
        number = "+" + default_country_code + (number[1:] if number.startswith("0") else number)
    return number if _E164.fullmatch(number) else None


def _phone_hash(ctx: Ctx, traits: dict[str, Any], warnings: list[str]) -> str | None:
    hashed: str | None = None
    given = traits.pop("phone_sha256", None)
    if isinstance(given, str) and _HEX64.fullmatch(given):
        hashed = given
    for name in ("phone", "phone_number"):
        value = traits.pop(name, None)
        if value is None:
            continue
        number = phone_e164(str(value), ctx.config.default_country_code)
        if number is None:
            warnings.append("traits.phone could not be normalized to E.164; ignored")
        else:
            hashed = hashlib.sha256(number.encode()).hexdigest()
    return hashed


def process_identify(ctx: Ctx, cmd: IdentifyCommand) -> CommandResult:
    warnings: list[str] = []
    if cmd.idempotency_key is not None:
        original = claim_key(ctx, "identify", cmd.idempotency_key, cmd.id, cmd.received_at)
        if original is not None:
            return CommandResult(command_id=cmd.id, status="duplicate", result_id=original,
                                 body={"success": True, "duplicate": True})
    user = ensure_user(ctx, cmd.user_key, cmd.occurred_at, cmd.origin)
    traits = dict(cmd.traits)
    phone_hash = _phone_hash(ctx, traits, warnings) or cmd.phone_sha256
    merge_traits(user, traits, cmd.deleted_traits, warnings)
    if cmd.email_sha256:
        user.email_sha256 = cmd.email_sha256
    if phone_hash:
        user.phone_sha256 = phone_hash
    if user.first_identified_at is None:
        user.first_identified_at = cmd.occurred_at
    user.last_identified_at = cmd.occurred_at
    before = set(ctx.reattribute)
    ctx.reattribute.clear()
    linked = False
    if cmd.visitor_key is not None:
        visitor = ensure_visitor(ctx, cmd.visitor_key, cmd.occurred_at)
        links = links_of_visitor(ctx, visitor.id)
        active = current_link(links)
        if not links:
            add_link(ctx, visitor, user, cmd.occurred_at, first=True)
            queue_reattribution_for_link(ctx, visitor, user)
        elif active is None or active.user_id != user.id:
            # ID-4: a relink moves the visitor from T on; past sessions keep their owner.
            if active is not None:
                active.valid_to = cmd.occurred_at
            add_link(ctx, visitor, user, cmd.occurred_at, first=False)
        linked = True
    merge_provisional_users(ctx, user)
    ctx.reattribute = with_inheritors(ctx, ctx.reattribute)  # ATT-49 (c)
    queued = len(ctx.reattribute)
    ctx.reattribute.update(before)
    return CommandResult(
        command_id=cmd.id,
        result_id=user.id,
        body={
            "success": True,
            "identity_id": user.id,
            "user_id": cmd.user_key,
            "visitor_id": cmd.visitor_key,
            "visitor_linked": linked,
            "reattribution": {"conversions": queued},
        },
        warnings=warnings,
    )


def resolve_user(ctx: Ctx, user_key: str | None, email_sha256: str | None, at: datetime,
                 origin: str | None = None) -> User | None:
    """An item's named user: ``user_id`` first, else an ``identifier.email`` hash (ID-9)."""
    if user_key is not None:
        return ensure_user(ctx, user_key, at, origin)
    if email_sha256 is not None:
        return user_for_email(ctx, email_sha256, at, origin)
    return None
