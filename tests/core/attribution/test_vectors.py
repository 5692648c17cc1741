"""ATT-66 acceptance vectors: the engine must reproduce every case exactly.

Each line of shared/fixtures/attribution/vectors.jsonl is its own test. Data-driven cases fit their `paths`
corpus with ``core.attribution.fits`` and check the fit values (6 dp) as well as the credits.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import pytest

from core.attribution import (
    DATA_DRIVEN,
    AttributionSettings,
    CreditRow,
    FitInput,
    ModelFit,
    ModelResult,
    Touchpoint,
    apply_revenue,
    attribute,
    journey_for,
)
from core.attribution.fits import JourneyPath, fit_markov, fit_shapley
from core.money import currency_exponent, format_minor, parse_revenue


def _vectors_path() -> Path:
    shared = os.environ.get("MBUZZ_SHARED_DIR")
    base = Path(shared) if shared else Path(__file__).parents[3].parent / "shared"
    return base / "fixtures/attribution/vectors.jsonl"


def _load() -> list[dict[str, Any]]:
    path = _vectors_path()
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


CASES = _load()


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _settings(params: dict[str, Any]) -> AttributionSettings:
    defaults = AttributionSettings()
    return AttributionSettings(
        lookback_days=params.get("lookback_days", defaults.lookback_days),
        journey_reset=params.get("journey_reset", defaults.journey_reset),
        direct_burst_collapse=params.get("direct_burst_collapse", defaults.direct_burst_collapse),
        time_decay_half_life_days=params.get("half_life_days", defaults.time_decay_half_life_days),
        u_shaped_first_share=Decimal(params.get("first_share", defaults.u_shaped_first_share)),
        u_shaped_last_share=Decimal(params.get("last_share", defaults.u_shaped_last_share)),
        markov_order=params.get("order", defaults.markov_order),
        min_conversions=params.get("min_conversions", defaults.min_conversions),
        min_journeys=params.get("min_journeys", defaults.min_journeys),
    )


def _minor(text: str | None, exponent: int) -> int | None:
    parsed = parse_revenue(text, exponent)
    assert parsed.error is None, parsed.error
    return parsed.minor


def _fit(case: dict[str, Any], settings: AttributionSettings) -> ModelFit:
    """Fit the case's corpus and check the fit values it expects (rounded half-even to 6 dp, ATT-66)."""
    paths = [JourneyPath(tuple(p["channels"]), p["converted"], p["count"]) for p in case.get("paths", [])]
    if case["model"] == "markov_chain":
        fit = fit_markov(paths, settings.markov_order, settings.min_conversions, settings.min_journeys)
    else:
        fit = fit_shapley(paths, settings.min_conversions, settings.min_journeys)
    six = Decimal("0.000001")

    def rounded(values: dict[str, Decimal]) -> dict[str, str]:
        return {c: str(v.quantize(six, rounding=ROUND_HALF_EVEN)) for c, v in values.items()}

    if "expected_conversion_probability" in case:
        assert fit.conversion_probability is not None
        assert rounded({"P": fit.conversion_probability})["P"] == case["expected_conversion_probability"]
    if "expected_removal_effects" in case:
        assert rounded(dict(fit.values)) == case["expected_removal_effects"]
    if "expected_shapley_values" in case:
        assert rounded(dict(fit.values)) == case["expected_shapley_values"]
    if "expected_grand_coalition_value" in case:  # efficiency: Σ φ(c) = v(P)
        total = sum(fit.values.values(), Decimal(0))
        assert rounded({"v": total})["v"] == case["expected_grand_coalition_value"]
    if "expected_excluded_channels" in case:
        assert list(fit.excluded_channels) == case["expected_excluded_channels"]
    return ModelFit(status=fit.status, values=fit.values)


def _inherited(case: dict[str, Any]) -> ModelResult:
    rows = tuple(
        CreditRow(i, r["session_id"], r["channel"], r["position"], int(Decimal(r["credit"]) * 10_000), None)
        for i, r in enumerate(case["inherited_credits"])
    )
    return ModelResult(case["model"], rows)


def _expected_row(row: CreditRow, exponent: int) -> dict[str, Any]:
    return {
        "session_id": row.session_id,
        "channel": row.channel,
        "credit": str(row.credit),
        "revenue_credit": None if row.revenue_minor is None else format_minor(row.revenue_minor, exponent),
        "position": row.position,
    }


def test_ATT66_vector_file_present() -> None:
    assert CASES, f"no vectors found at {_vectors_path()}"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_ATT66_vector(case: dict[str, Any]) -> None:
    model = case["model"]
    params = case.get("params", {})
    settings = _settings(params)
    exponent = currency_exponent(case["currency"])
    converted_at = _ts(case["conversion_at"])

    fits: dict[str, FitInput] = {}
    if model in DATA_DRIVEN:
        fits[model] = _fit(case, settings)

    revenue = _minor(case["revenue"], exponent)
    if "expected_revenue" in case:  # API-91 rounding
        assert revenue is not None and format_minor(revenue, exponent) == case["expected_revenue"]
    net = revenue
    if revenue is not None and case.get("refunds"):  # ATT-38
        refunded = sum(_minor(r, exponent) or 0 for r in case["refunds"])
        net = max(0, revenue - refunded)
    if "expected_net_revenue" in case:
        expected_net = case["expected_net_revenue"]
        assert (None if net is None else format_minor(net, exponent)) == expected_net

    if "inherited_credits" in case:  # ATT-43: copy rows, re-split this conversion's own net revenue
        result = apply_revenue(_inherited(case), net)
        sessions_analyzed = case["inherited_sessions_analyzed"]
        truncated = False
    else:
        previous = params.get("previous_conversion_at")
        touchpoints = [
            Touchpoint(t["session_id"], t["channel"], _ts(t["at"]), visitor_id=t.get("visitor_id"))
            for t in case["touchpoints"]
        ]
        journey = journey_for(touchpoints, converted_at, settings, _ts(previous) if previous else None)
        results = attribute(journey, converted_at, net, settings, fits)
        assert list(results) == [m for m in settings.enabled_models]  # ATT-13 canonical order
        result = results[model]
        sessions_analyzed = len(journey.touchpoints)
        truncated = journey.truncated

    assert [_expected_row(r, exponent) for r in result.rows] == case["expected"]
    assert sessions_analyzed == case["expected_sessions_analyzed"]
    assert truncated == case.get("expected_truncated", False)
    assert result.fallback == case.get("expected_fallback")
    if "expected_fallback_reason" in case:
        assert result.fallback_reason == case["expected_fallback_reason"]
