"""Order amounts (shopify.md SHP-2, SHP-44, SHP-45, SHP-63, SHP-64): pure Decimal arithmetic, never float.

Shopify sends money both as flat strings and as `*_set` objects holding shop and presentment money; the shop
money wins. Refunds are summed per currency and converted once with the order's ratio, then quantized once
with ROUND_HALF_EVEN, so a sum of refunds is exact in minor units.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from core.money import currency_exponent

__all__ = ["OrderAmounts", "OrderError", "RefundAmount", "decimal_of", "fx_ratio", "order_amounts", "quantize",
           "refund_amount", "shop_money"]


class OrderError(ValueError):
    """A payload the connector cannot turn into commands; the message is the ledger row's error."""


def decimal_of(value: object) -> Decimal | None:
    """A money value from a JSON string or number (parsed as Decimal); None when absent or not a number."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, str) and value.strip():
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation:
            return None
        return parsed if parsed.is_finite() else None
    return None


def _money_set(body: dict[str, Any], field: str, side: str) -> Decimal | None:
    money_set = body.get(f"{field}_set")
    if isinstance(money_set, dict) and isinstance(money_set.get(side), dict):
        return decimal_of(money_set[side].get("amount"))
    return None


def shop_money(body: dict[str, Any], *fields: str) -> Decimal | None:
    """The first field present, reading `{field}_set.shop_money.amount` before the flat `{field}` (SHP-40)."""
    for field in fields:
        value = _money_set(body, field, "shop_money")
        if value is None:
            value = decimal_of(body.get(field))
        if value is not None:
            return value
    return None


def presentment_money(body: dict[str, Any], *fields: str) -> Decimal | None:
    for field in fields:
        value = _money_set(body, field, "presentment_money")
        if value is not None:
            return value
    return None


def quantize(amount: Decimal, currency: str) -> str:
    """To the currency's ISO 4217 minor units, ROUND_HALF_EVEN, as a plain decimal string (SHP-2)."""
    step = Decimal(1).scaleb(-currency_exponent(currency))
    return format(amount.quantize(step, rounding=ROUND_HALF_EVEN), "f")


def fx_ratio(body: dict[str, Any], shop_currency: str, presentment_currency: str) -> Decimal:
    """SHP-45: shop total over presentment total, exact; 1 when the currencies agree or the total is zero."""
    shop = _money_set(body, "total_price", "shop_money")
    shown = _money_set(body, "total_price", "presentment_money")
    if shop_currency == presentment_currency or shop is None or not shown:
        return Decimal(1)
    return (shop / shown).normalize()


@dataclass(frozen=True)
class RefundAmount:
    amount: Decimal  # in the shop currency, not yet quantized
    presentment_amount: Decimal | None  # the part paid back in the presentment currency, when converted

    def properties(self, refund_id: str, basis: str, presentment_currency: str, ratio: Decimal) -> dict[str, Any]:
        props: dict[str, Any] = {"refund_id": refund_id, "revenue_basis": basis}
        if self.presentment_amount is not None:
            props.update(presentment_amount=quantize(self.presentment_amount, presentment_currency),
                         presentment_currency=presentment_currency, fx_ratio=format(ratio, "f"))
        return props


def refund_amount(refund: dict[str, Any], basis: str, shop_currency: str, presentment_currency: str,
                  ratio: Decimal) -> RefundAmount:
    """SHP-63 (basis `total`: successful refund transactions) or SHP-64 (basis `subtotal`: refunded lines)."""
    if basis == "subtotal":
        total = Decimal(0)
        for line in refund.get("refund_line_items") or []:
            if not isinstance(line, dict):
                continue
            value = _money_set(line, "subtotal", "shop_money")
            if value is None:
                flat = decimal_of(line.get("subtotal"))
                value = None if flat is None else flat * ratio
            total += value or Decimal(0)
        return RefundAmount(total, None)
    shop_sum, shown_sum, converted = Decimal(0), Decimal(0), False
    for transaction in refund.get("transactions") or []:
        if not isinstance(transaction, dict):
            continue
        if transaction.get("kind") != "refund" or transaction.get("status") != "success":
            continue  # failures, voids and other kinds never move money
        amount = decimal_of(transaction.get("amount")) or Decimal(0)
        currency = str(transaction.get("currency") or shop_currency).upper()
        if currency == shop_currency:
            shop_sum += amount
        elif currency == presentment_currency:
            shown_sum, converted = shown_sum + amount, True
        else:
            raise OrderError("unexpected_currency")
    return RefundAmount(shop_sum + shown_sum * ratio, shown_sum if converted else None)


@dataclass(frozen=True)
class OrderAmounts:
    """SHP-44/45: revenue under each basis (current amounts plus the refunds the payload already contains)."""

    total: Decimal
    subtotal: Decimal
    presentment_total: Decimal
    ratio: Decimal

    def revenue(self, basis: str) -> Decimal:
        return self.subtotal if basis == "subtotal" else self.total


def order_amounts(body: dict[str, Any], shop_currency: str, presentment_currency: str) -> OrderAmounts:
    ratio = fx_ratio(body, shop_currency, presentment_currency)
    refunds = [r for r in body.get("refunds") or [] if isinstance(r, dict)]
    by_total = [refund_amount(r, "total", shop_currency, presentment_currency, ratio) for r in refunds]
    by_subtotal = [refund_amount(r, "subtotal", shop_currency, presentment_currency, ratio) for r in refunds]
    current_total = shop_money(body, "current_total_price", "total_price")
    current_subtotal = shop_money(body, "current_subtotal_price", "subtotal_price")
    if current_total is None:
        raise OrderError("total_price: missing or not a number")
    shown = presentment_money(body, "current_total_price", "total_price")
    if shown is None:
        shown = current_total / ratio if ratio else current_total
    shown_refunds = sum((r.presentment_amount if r.presentment_amount is not None else
                         (r.amount / ratio if ratio else r.amount) for r in by_total), Decimal(0))
    return OrderAmounts(
        total=current_total + sum((r.amount for r in by_total), Decimal(0)),
        subtotal=(current_subtotal or Decimal(0)) + sum((r.amount for r in by_subtotal), Decimal(0)),
        presentment_total=shown + shown_refunds,
        ratio=ratio,
    )
