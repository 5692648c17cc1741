"""Refunds and cancellations of conversions (attribution.md ATT-38; shopify.md SHP-60/61).

A refund re-splits the revenue credits of every stored model over the new net revenue (ATT-37 from the stored
4-dp credits, so credits never change); a cancel only sets the status, which removes the conversion from
reports and fits while keeping it and its rows. Adjustments are unique per idempotency key; one that arrives
before its conversion waits as `pending` and is applied, in arrival order, right after the conversion is
created.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import sqlalchemy as sa

from core.attribution import revenue_split
from core.commands import CommandResult, OrderAdjustmentCommand
from core.ids import new_id
from core.money import currency_exponent, parse_revenue
from core.processors.context import Ctx, insert_ignore
from core.storage.models import AttributionCredit, Conversion, ConversionAdjustment

__all__ = ["apply_pending_adjustments", "process_adjustment"]

log = logging.getLogger("mbuzz.adjustments")

ADJUSTMENTS = ("refund", "cancel")


def process_adjustment(ctx: Ctx, cmd: OrderAdjustmentCommand) -> CommandResult:
    if cmd.adjustment not in ADJUSTMENTS:
        return CommandResult(command_id=cmd.id, status="rejected",
                             errors=[f"adjustment must be refund or cancel, got {cmd.adjustment!r}"])
    adjustment_id = new_id("adj", cmd.received_at)
    stored = insert_ignore(ctx.db, ConversionAdjustment, {
        "account_id": ctx.account_id, "environment": ctx.environment, "id": adjustment_id,
        "idempotency_key": cmd.idempotency_key, "conversion_key": cmd.conversion_key, "adjustment": cmd.adjustment,
        "amount": cmd.amount, "currency": cmd.currency.upper() if cmd.currency else None, "status": "pending",
        "properties": cmd.properties, "occurred_at": cmd.occurred_at, "received_at": cmd.received_at,
        "origin": cmd.origin,
    })
    if not stored:  # ATT-38: a replayed key is a no-op
        original = ctx.db.scalar(sa.select(ConversionAdjustment.id).where(
            ctx.scoped(ConversionAdjustment), ConversionAdjustment.idempotency_key == cmd.idempotency_key))
        return CommandResult(command_id=cmd.id, status="duplicate", result_id=original)
    row = ctx.db.scalars(sa.select(ConversionAdjustment).where(
        ctx.scoped(ConversionAdjustment), ConversionAdjustment.id == adjustment_id)).one()
    conv = ctx.db.scalars(sa.select(Conversion).where(
        ctx.scoped(Conversion), Conversion.idempotency_key == cmd.conversion_key).with_for_update()).first()
    if conv is not None:
        _apply(ctx, conv, row)
    return CommandResult(command_id=cmd.id, result_id=adjustment_id,
                         body={"id": adjustment_id, "status": row.status, "error": row.error})


def apply_pending_adjustments(ctx: Ctx, conv: Conversion) -> bool:
    """Adjustments that arrived before this conversion, applied in arrival order (ATT-38); True if any."""
    if conv.idempotency_key is None:
        return False
    waiting = list(ctx.db.scalars(sa.select(ConversionAdjustment).where(
        ctx.scoped(ConversionAdjustment), ConversionAdjustment.conversion_key == conv.idempotency_key,
        ConversionAdjustment.status == "pending",
    ).order_by(ConversionAdjustment.received_at, ConversionAdjustment.id)))
    for row in waiting:
        _apply(ctx, conv, row)
    return bool(waiting)


def _apply(ctx: Ctx, conv: Conversion, row: ConversionAdjustment) -> None:
    row.conversion_id = conv.id
    row.applied_at = datetime.now(UTC)
    if row.adjustment == "cancel":
        conv.status = "cancelled"
        row.status = "applied"
        return
    if row.currency is not None and row.currency != conv.currency:  # ATT-38: rejected and logged
        row.status, row.error = "rejected", f"currency {row.currency} differs from the conversion's {conv.currency}"
        log.warning("adjustment %s of conversion %s rejected: %s", row.id, conv.id, row.error)
        return
    parsed = parse_revenue(row.amount, currency_exponent(conv.currency))
    if parsed.error is not None or parsed.minor is None:
        row.status, row.error = "rejected", f"amount must be a decimal >= 0, got {row.amount!r}"
        return
    row.amount_minor = parsed.minor
    row.status = "applied"
    conv.refunded_minor = (conv.refunded_minor or 0) + parsed.minor
    if conv.revenue_minor is None:
        return  # recorded; revenue credits stay null
    conv.net_revenue_minor = max(0, conv.revenue_minor - conv.refunded_minor)
    resplit_revenue(ctx, conv)


def resplit_revenue(ctx: Ctx, conv: Conversion) -> None:
    """ATT-37 with M = net revenue over every stored model's rows; credits unchanged (ATT-38)."""
    net = conv.net_revenue_minor
    rows = list(ctx.db.scalars(sa.select(AttributionCredit).where(
        ctx.scoped(AttributionCredit), AttributionCredit.conversion_id == conv.id,
    ).order_by(AttributionCredit.model, AttributionCredit.touchpoint_index)))
    by_model: dict[str, list[AttributionCredit]] = {}
    for credit in rows:
        by_model.setdefault(credit.model, []).append(credit)
    for model, model_rows in by_model.items():
        if net is None:
            shares: list[int | None] = [None] * len(model_rows)
        elif model == "participation":
            shares = [net] * len(model_rows)
        else:
            shares = list(revenue_split([int(r.credit * 10_000) for r in model_rows], net))
        for credit, share in zip(model_rows, shares, strict=True):
            credit.revenue_credit_minor = share
