"""Refunds and cancellations (attribution.md ATT-38, ATT-67 scenario 11; shopify.md SHP-61; quality.md Q-24)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask

from core.commands import Command, CommandResult, ConversionCommand, OrderAdjustmentCommand, TouchCommand
from core.ids import new_id
from core.log import InlineLog
from core.storage import models as m
from core.tenant import Tenant
from tests.conftest import new_account

NOW = datetime.now(UTC).replace(microsecond=0)
SOURCES = ("utm_source=newsletter&utm_medium=email", "utm_source=facebook&utm_medium=paid_social", "gclid=Cj0")


class Shop:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.tenant = Tenant(new_account(app).account_id, "test")
        self.log = InlineLog(app.config["MBUZZ"].sessions)

    def run(self, *commands: Command) -> list[CommandResult]:
        return self.log.process(self.tenant, list(commands))

    def journey(self, visitor: str) -> None:
        for i, source in enumerate(SOURCES):
            at = NOW - timedelta(days=3 - i)
            self.run(TouchCommand(id=new_id("cmd"), visitor_key=visitor, client_session_id=f"{visitor}{i}",
                                  occurred_at=at, received_at=at, url=f"https://shop.example/?{source}"))

    def order(self, visitor: str, key: str, revenue: int | None = 9999, **extra: Any) -> CommandResult:
        (result,) = self.run(ConversionCommand(id=new_id("conv"), conversion_type="purchase", received_at=NOW,
                                               converted_at=NOW, visitor_key=visitor, revenue_minor=revenue,
                                               currency="USD", idempotency_key=key, **extra))
        return result

    def adjust(self, key: str, order_key: str, adjustment: str = "refund", amount: str | None = "40.00",
               currency: str | None = "USD") -> CommandResult:
        (result,) = self.run(OrderAdjustmentCommand(
            id=new_id("cmd"), idempotency_key=key, conversion_key=order_key, adjustment=adjustment,
            occurred_at=NOW, received_at=NOW, amount=amount if adjustment == "refund" else None, currency=currency))
        return result

    def conversion(self, conversion_id: str) -> m.Conversion:
        with self.app.config["MBUZZ"].sessions() as db:
            conv = db.get(m.Conversion, (self.tenant.account_id, conversion_id))
            assert conv is not None
            return conv

    def revenue(self, conversion_id: str, model: str = "linear") -> list[int | None]:
        with self.app.config["MBUZZ"].sessions() as db:
            return list(db.scalars(sa.select(m.AttributionCredit.revenue_credit_minor).where(
                m.AttributionCredit.conversion_id == conversion_id, m.AttributionCredit.model == model)
                .order_by(m.AttributionCredit.touchpoint_index)))


def test_ATT38_refund_then_cancel(app: Flask) -> None:
    shop = Shop(app)
    shop.journey("r")
    conv_id = str(shop.order("r", "order-1").result_id)
    assert shop.revenue(conv_id) == [3333, 3333, 3333]
    refund = shop.adjust("refund-1", "order-1")
    assert refund.body is not None and refund.body["status"] == "applied"
    conv = shop.conversion(conv_id)
    assert (conv.refunded_minor, conv.net_revenue_minor) == (4000, 5999)
    assert shop.revenue(conv_id) == [1999, 2000, 2000]  # ATT-38's example: 59.99 over 0.3333/0.3333/0.3334
    assert shop.revenue(conv_id, "participation") == [5999, 5999, 5999]
    assert shop.adjust("refund-1", "order-1").status == "duplicate"  # the replayed key changes nothing
    assert shop.conversion(conv_id).net_revenue_minor == 5999
    shop.adjust("cancel-1", "order-1", "cancel")
    conv = shop.conversion(conv_id)
    assert conv.status == "cancelled" and conv.net_revenue_minor == 5999
    assert shop.revenue(conv_id) == [1999, 2000, 2000]  # rows kept


def test_ATT38_refund_in_another_currency_changes_nothing(app: Flask) -> None:
    shop = Shop(app)
    shop.journey("c")
    conv_id = str(shop.order("c", "order-2").result_id)
    result = shop.adjust("refund-eur", "order-2", currency="EUR")
    assert result.body is not None and result.body["status"] == "rejected"
    assert result.body["error"] == "currency EUR differs from the conversion's USD"
    assert shop.conversion(conv_id).net_revenue_minor == 9999 and shop.revenue(conv_id) == [3333, 3333, 3333]
    refunds_without_revenue = shop.order("c", "order-3", revenue=None)
    shop.adjust("refund-3", "order-3", amount="5.00")
    conv = shop.conversion(str(refunds_without_revenue.result_id))
    assert (conv.refunded_minor, conv.net_revenue_minor) == (500, None)  # recorded; credits stay null
    assert shop.revenue(conv.id) == [None, None, None]


def test_Q24_refund_before_its_order_is_applied_when_the_order_arrives(app: Flask) -> None:
    shop = Shop(app)
    shop.journey("o")
    early = shop.adjust("refund-early", "order-4", amount="99.99")
    assert early.body is not None and early.body["status"] == "pending"
    created = shop.order("o", "order-4")
    assert created.body is not None
    assert [r["revenue_credit"] for r in created.body["attribution"]["models"]["linear"]] == ["0.00"] * 3
    conv = shop.conversion(str(created.result_id))
    assert (conv.refunded_minor, conv.net_revenue_minor) == (9999, 0)
    with app.config["MBUZZ"].sessions() as db:
        rows = db.scalars(sa.select(m.ConversionAdjustment).where(
            m.ConversionAdjustment.account_id == shop.tenant.account_id)).all()
    assert [(r.status, r.conversion_id) for r in rows] == [("applied", conv.id)]


def test_ATT38_an_inheritor_keeps_its_own_revenue(app: Flask) -> None:
    shop = Shop(app)
    shop.journey("i")
    acquisition = str(shop.order("i", "signup", revenue=5000, is_acquisition=True).result_id)
    payment = shop.order("i", "payment", revenue=3000, inherit_acquisition=True)
    assert payment.body is not None and payment.body["attribution"]["inherited_from"] == acquisition
    shop.adjust("refund-signup", "signup", amount="50.00")
    assert shop.revenue(acquisition) == [0, 0, 0]
    assert shop.revenue(str(payment.result_id)) == [1000, 1000, 1000]
