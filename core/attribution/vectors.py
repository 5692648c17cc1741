"""Acceptance vectors (attribution.md ATT-66): evaluate one case and list how it differs from its expectations.

Used by the test suite and by ``flask --app gateway mbuzz check-vectors``, so both judge a vector file the same
way. A case carries the candidate sessions, the settings and, for data-driven models, the fit corpus.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from core.attribution.fits import FitResult, JourneyPath, fit_markov, fit_shapley
from core.attribution.journeys import DATA_DRIVEN, AttributionSettings, Touchpoint, journey_for
from core.attribution.models import CreditRow, FitInput, ModelFit, ModelResult, apply_revenue, attribute
from core.money import currency_exponent, format_minor, parse_revenue

__all__ = ["check_case", "settings_of"]

_SIX = Decimal("0.000001")


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def settings_of(params: Mapping[str, Any]) -> AttributionSettings:
    """ATT-66 `params`, absent keys taking the ATT-1 defaults."""
    d = AttributionSettings()
    return AttributionSettings(
        lookback_days=params.get("lookback_days", d.lookback_days),
        journey_reset=params.get("journey_reset", d.journey_reset),
        direct_burst_collapse=params.get("direct_burst_collapse", d.direct_burst_collapse),
        time_decay_half_life_days=params.get("half_life_days", d.time_decay_half_life_days),
        u_shaped_first_share=Decimal(params.get("first_share", d.u_shaped_first_share)),
        u_shaped_last_share=Decimal(params.get("last_share", d.u_shaped_last_share)),
        markov_order=params.get("order", d.markov_order),
        min_conversions=params.get("min_conversions", d.min_conversions),
        min_journeys=params.get("min_journeys", d.min_journeys),
    )


def _six(value: Decimal) -> str:
    return str(value.quantize(_SIX, rounding=ROUND_HALF_EVEN))


def _fit_mismatches(case: Mapping[str, Any], fit: FitResult) -> list[str]:
    """Fit values are compared rounded half-even to 6 dp (ATT-66)."""
    found: dict[str, Any] = {}
    if fit.conversion_probability is not None:
        found["expected_conversion_probability"] = _six(fit.conversion_probability)
    values = {c: _six(v) for c, v in fit.values.items()}
    if fit.model == "markov_chain":
        found["expected_removal_effects"] = values
    else:
        found["expected_shapley_values"] = values
        found["expected_grand_coalition_value"] = _six(sum(fit.values.values(), Decimal(0)))
        found["expected_excluded_channels"] = list(fit.excluded_channels)
    return [f"{key}: expected {case[key]!r}, got {value!r}" for key, value in found.items()
            if key in case and case[key] != value]


def _fit(case: Mapping[str, Any], settings: AttributionSettings) -> FitResult:
    paths = [JourneyPath(tuple(p["channels"]), bool(p["converted"]), int(p["count"])) for p in case.get("paths", [])]
    if case["model"] == "markov_chain":
        return fit_markov(paths, settings.markov_order, settings.min_conversions, settings.min_journeys)
    return fit_shapley(paths, settings.min_conversions, settings.min_journeys)


def _minor(text: str | None, exponent: int) -> int | None:
    parsed = parse_revenue(text, exponent)
    if parsed.error is not None:
        raise ValueError(parsed.error)
    return parsed.minor


def _row(row: CreditRow, exponent: int) -> dict[str, Any]:
    return {
        "session_id": row.session_id,
        "channel": row.channel,
        "credit": str(row.credit),
        "revenue_credit": None if row.revenue_minor is None else format_minor(row.revenue_minor, exponent),
        "position": row.position,
    }


def check_case(case: Mapping[str, Any]) -> list[str]:
    """Every way the engine's answer differs from the case's expectations; empty when the case passes."""
    model = case["model"]
    params = case.get("params", {})
    settings = settings_of(params)
    exponent = currency_exponent(case["currency"])
    converted_at = _ts(case["conversion_at"])
    problems: list[str] = []

    fits: dict[str, FitInput] = {}
    if model in DATA_DRIVEN:
        fit = _fit(case, settings)
        problems += _fit_mismatches(case, fit)
        fits[model] = ModelFit(status=fit.status, values=fit.values)

    revenue = _minor(case["revenue"], exponent)
    if "expected_revenue" in case:  # API-91 rounding
        shown = None if revenue is None else format_minor(revenue, exponent)
        if shown != case["expected_revenue"]:
            problems.append(f"revenue: expected {case['expected_revenue']!r}, got {shown!r}")
    net = revenue
    if revenue is not None and case.get("refunds"):  # ATT-38
        net = max(0, revenue - sum(_minor(r, exponent) or 0 for r in case["refunds"]))
    if "expected_net_revenue" in case:
        shown = None if net is None else format_minor(net, exponent)
        if shown != case["expected_net_revenue"]:
            problems.append(f"net revenue: expected {case['expected_net_revenue']!r}, got {shown!r}")

    if "inherited_credits" in case:  # ATT-43: copy the rows, re-split this conversion's own net revenue
        inherited = ModelResult(model, tuple(
            CreditRow(i, r["session_id"], r["channel"], r["position"], int(Decimal(r["credit"]) * 10_000), None)
            for i, r in enumerate(case["inherited_credits"])
        ))
        result = apply_revenue(inherited, net)
        sessions_analyzed, truncated = case["inherited_sessions_analyzed"], False
    else:
        previous = params.get("previous_conversion_at")
        touchpoints = [
            Touchpoint(t["session_id"], t["channel"], _ts(t["at"]), visitor_id=t.get("visitor_id"))
            for t in case["touchpoints"]
        ]
        journey = journey_for(touchpoints, converted_at, settings, _ts(previous) if previous else None)
        results = attribute(journey, converted_at, net, settings, fits)
        if list(results) != list(settings.enabled_models):
            problems.append(f"models: expected canonical order {list(settings.enabled_models)}, got {list(results)}")
        result = results[model]
        sessions_analyzed, truncated = len(journey.touchpoints), journey.truncated

    rows = [_row(r, exponent) for r in result.rows]
    if rows != case["expected"]:
        problems.append(f"rows: expected {case['expected']}, got {rows}")
    if sessions_analyzed != case["expected_sessions_analyzed"]:
        problems.append(f"sessions_analyzed: expected {case['expected_sessions_analyzed']}, got {sessions_analyzed}")
    if truncated != case.get("expected_truncated", False):
        problems.append(f"truncated: expected {case.get('expected_truncated', False)}, got {truncated}")
    if result.fallback != case.get("expected_fallback"):
        problems.append(f"fallback: expected {case.get('expected_fallback')!r}, got {result.fallback!r}")
    reason = case.get("expected_fallback_reason")
    if "expected_fallback_reason" in case and result.fallback_reason != reason:
        problems.append(f"fallback_reason: expected {reason!r}, got {result.fallback_reason!r}")
    return problems
