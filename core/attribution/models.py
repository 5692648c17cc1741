"""The eight attribution models, per conversion (attribution.md ATT-12..ATT-22, ATT-32, ATT-34/37, ATT-43).

Raw credits are exact: rationals for the rule-based models and the data-driven share step, and the
normative 50-digit decimal procedure for time decay. They are turned into 4-dp units once (ATT-34) and
revenue is always split from those units (ATT-37), so a re-split after a refund or for an inheriting
conversion reproduces fresh attribution digit for digit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from fractions import Fraction
from typing import TypeAlias

from core.attribution.journeys import MODELS, AttributionSettings, Journey, Touchpoint
from core.attribution.rounding import UNITS, largest_remainder_units, revenue_split, units_from_ratios

__all__ = [
    "FALLBACK_LINEAR",
    "FIT_INSUFFICIENT_DATA",
    "FIT_PENDING",
    "FIT_READY",
    "NO_POSITIVE_VALUE",
    "CreditRow",
    "FitInput",
    "ModelFit",
    "ModelResult",
    "apply_revenue",
    "attribute",
    "data_driven_shares",
    "position_of",
    "time_decay_raw",
]

FALLBACK_LINEAR = "linear"
# ATT-32 fallback reasons; the first two double as fit statuses where they apply.
FIT_PENDING = "fit_pending"
FIT_INSUFFICIENT_DATA = "insufficient_data"
NO_POSITIVE_VALUE = "no_positive_value"
FIT_READY = "ready"

# ATT-18: 50 significant digits, half-even; exp/ln of the decimal module are correctly rounded.
_DECAY_CONTEXT = Context(prec=50, rounding=ROUND_HALF_EVEN, Emin=-999_999, Emax=999_999)
_LN2 = _DECAY_CONTEXT.ln(Decimal(2))
_MICROSECONDS_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class CreditRow:
    """One stored credit row (ATT-47) minus the columns the caller copies from the conversion."""

    touchpoint_index: int
    session_id: str
    channel: str
    position: str  # first | middle | last
    credit_units: int  # credit × 10,000; participation: 10,000
    revenue_minor: int | None

    @property
    def credit(self) -> Decimal:
        """The 4-dp credit as stored in numeric(5,4) (ATT-47), e.g. Decimal('0.3334')."""
        return Decimal(self.credit_units).scaleb(-4)


@dataclass(frozen=True)
class ModelResult:
    """One model's rows for one conversion; `fallback`/`fallback_reason` are stored on every row (ATT-32)."""

    model: str
    rows: tuple[CreditRow, ...]
    fallback: str | None = None
    fallback_reason: str | None = None


@dataclass(frozen=True)
class ModelFit:
    """What the per-conversion step needs from a tenant's current data-driven fit (ATT-29/ATT-30).

    `values` maps channel → canonical value (Markov removal effect or Shapley value, the stored 12-dp
    decimal). A fit with status `insufficient_data` carries no values and makes the model fall back.
    """

    status: str = FIT_READY
    values: Mapping[str, Decimal] = field(default_factory=dict)


# A plain channel → value mapping is shorthand for a ready fit.
FitInput: TypeAlias = ModelFit | Mapping[str, Decimal]


def position_of(index: int, length: int) -> str:
    """ATT-13: index 0 is `first` (also for n = 1), index n−1 is `last` when n ≥ 2, the rest `middle`."""
    if index == 0:
        return "first"
    return "last" if index == length - 1 else "middle"


def attribute(
    journey: Journey,
    converted_at: datetime,
    net_revenue_minor: int | None,
    settings: AttributionSettings,
    fits: Mapping[str, FitInput] | None = None,
) -> dict[str, ModelResult]:
    """Credit rows of every enabled model, keyed in canonical order (ATT-13).

    `net_revenue_minor` is M of ATT-37 (revenue net of refunds, ATT-38), or None for a conversion without
    revenue. `fits` maps `markov_chain` / `shapley_value` to the current fit; a model missing from it has
    no fit yet and falls back to linear with reason `fit_pending` (ATT-32, ATT-65).
    """
    if net_revenue_minor is not None and net_revenue_minor < 0:
        raise ValueError("net_revenue_minor must be >= 0")
    enabled = [m for m in MODELS if m in settings.enabled_models]
    touchpoints = journey.touchpoints
    if not touchpoints:  # ATT-12: unattributed, no rows for any model
        return {m: ModelResult(m, ()) for m in enabled}

    n = len(touchpoints)
    linear_units: list[int] | None = None

    def linear() -> list[int]:
        nonlocal linear_units
        if linear_units is None:
            linear_units = units_from_ratios([1] * n, n)  # ATT-17
        return linear_units

    results: dict[str, ModelResult] = {}
    for model in enabled:
        rows: tuple[CreditRow, ...]
        if model == "first_touch":  # ATT-15
            rows = (_row(touchpoints, 0, UNITS, net_revenue_minor),)
            results[model] = ModelResult(model, rows)
        elif model == "last_touch":  # ATT-16
            rows = (_row(touchpoints, n - 1, UNITS, net_revenue_minor),)
            results[model] = ModelResult(model, rows)
        elif model == "linear":
            results[model] = ModelResult(model, _per_touchpoint(touchpoints, linear(), net_revenue_minor))
        elif model == "time_decay":
            raw = time_decay_raw(touchpoints, converted_at, settings.time_decay_half_life_days)
            units = largest_remainder_units([Fraction(r) for r in raw])
            results[model] = ModelResult(model, _per_touchpoint(touchpoints, units, net_revenue_minor))
        elif model == "u_shaped":
            first, last = Fraction(settings.u_shaped_first_share), Fraction(settings.u_shaped_last_share)
            units = largest_remainder_units(_u_shaped_raw(n, first, last))
            results[model] = ModelResult(model, _per_touchpoint(touchpoints, units, net_revenue_minor))
        elif model == "participation":
            results[model] = ModelResult(model, _participation(touchpoints, net_revenue_minor))
        else:  # markov_chain, shapley_value
            fit = None if fits is None else fits.get(model)
            shares, reason = _data_driven(touchpoints, fit)
            if shares is None:
                rows = _per_touchpoint(touchpoints, linear(), net_revenue_minor)
                results[model] = ModelResult(model, rows, FALLBACK_LINEAR, reason)
            else:
                units = largest_remainder_units(shares)
                results[model] = ModelResult(model, _per_touchpoint(touchpoints, units, net_revenue_minor))
    return results


def apply_revenue(result: ModelResult, net_revenue_minor: int | None) -> ModelResult:
    """Re-split revenue over stored rows, credits untouched (ATT-37; used by refunds ATT-38 and ATT-43).

    For an inheriting conversion pass the acquisition's stored result and this conversion's own net revenue.
    """
    if net_revenue_minor is None:
        revenue: list[int | None] = [None] * len(result.rows)
    elif result.model == "participation":  # ATT-20: every row carries the full net revenue
        revenue = [net_revenue_minor] * len(result.rows)
    else:
        revenue = list(revenue_split([r.credit_units for r in result.rows], net_revenue_minor))
    rows = tuple(replace(row, revenue_minor=m) for row, m in zip(result.rows, revenue, strict=True))
    return replace(result, rows=rows)


def time_decay_raw(
    touchpoints: Sequence[Touchpoint], converted_at: datetime, half_life_days: int
) -> list[Decimal]:
    """ATT-18 raw credits, computed exactly as the rule prescribes so every implementation agrees."""
    ctx = _DECAY_CONTEXT
    half_life_us = Decimal(half_life_days * _MICROSECONDS_PER_DAY)
    weights: list[Decimal] = []
    for t in touchpoints:
        age = converted_at - t.at  # to the conversion instant, not the last touchpoint
        age_us = (age.days * 86_400 + age.seconds) * 1_000_000 + age.microseconds
        x = ctx.divide(Decimal(age_us), half_life_us)
        weights.append(ctx.exp(ctx.minus(ctx.multiply(x, _LN2))))
    total = Decimal(0)
    for w in weights:
        total = ctx.add(total, w)
    return [ctx.divide(w, total) for w in weights]


def data_driven_shares(channels: Sequence[str], values: Mapping[str, Decimal]) -> list[Fraction] | None:
    """ATT-21/ATT-22 raw credits of one journey from the fit's canonical per-channel values.

    e(c) = max(0, value), 0 for a channel the fit never saw; a channel's share e(c)/Σe is split equally
    over its touchpoints because the fit carries nothing that could rank two sessions of one channel.
    Returns None when no journey channel has a positive value (ATT-32 `no_positive_value`).
    """
    counts: dict[str, int] = {}
    for c in channels:
        counts[c] = counts.get(c, 0) + 1
    positive: dict[str, Fraction] = {}
    for c in sorted(counts):  # ATT-33: code-point order
        value = values.get(c)
        if value is not None:
            e = Fraction(value)
            if e > 0:
                positive[c] = e
    total = sum(positive.values(), Fraction(0))
    if total == 0:
        return None
    per_touch = {c: e / (total * counts[c]) for c, e in positive.items()}
    zero = Fraction(0)
    return [per_touch.get(c, zero) for c in channels]


def _data_driven(
    touchpoints: Sequence[Touchpoint], fit: FitInput | None
) -> tuple[list[Fraction] | None, str | None]:
    if fit is None:
        return None, FIT_PENDING
    if isinstance(fit, ModelFit):
        if fit.status == FIT_INSUFFICIENT_DATA:
            return None, FIT_INSUFFICIENT_DATA
        if fit.status != FIT_READY:
            raise ValueError(f"unknown fit status {fit.status!r}")
        values = fit.values
    else:
        values = fit
    shares = data_driven_shares([t.channel for t in touchpoints], values)
    return (None, NO_POSITIVE_VALUE) if shares is None else (shares, None)


def _u_shaped_raw(n: int, first: Fraction, last: Fraction) -> list[Fraction]:
    """ATT-19."""
    if n == 1:
        return [Fraction(1)]
    if n == 2:
        ends = first + last
        if ends == 0:
            return [Fraction(1, 2), Fraction(1, 2)]
        return [first / ends, last / ends]
    middle = (1 - first - last) / (n - 2)
    return [first, *([middle] * (n - 2)), last]


def _row(touchpoints: Sequence[Touchpoint], index: int, units: int, revenue: int | None) -> CreditRow:
    t = touchpoints[index]
    return CreditRow(index, t.session_id, t.channel, position_of(index, len(touchpoints)), units, revenue)


def _per_touchpoint(
    touchpoints: Sequence[Touchpoint], units: Sequence[int], net_revenue_minor: int | None
) -> tuple[CreditRow, ...]:
    n = len(touchpoints)
    revenue: Sequence[int | None] = (
        [None] * n if net_revenue_minor is None else revenue_split(units, net_revenue_minor)
    )
    return tuple(
        CreditRow(i, t.session_id, t.channel, position_of(i, n), units[i], revenue[i])
        for i, t in enumerate(touchpoints)
    )


def _participation(touchpoints: Sequence[Touchpoint], net_revenue_minor: int | None) -> tuple[CreditRow, ...]:
    """ATT-20: one row per distinct channel on its earliest touchpoint, credit 1, full revenue."""
    seen: set[str] = set()
    rows: list[CreditRow] = []
    for i, t in enumerate(touchpoints):
        if t.channel not in seen:
            seen.add(t.channel)
            rows.append(_row(touchpoints, i, UNITS, net_revenue_minor))
    return tuple(rows)
