"""The eight models per conversion: ATT-12..ATT-22, ATT-32, ATT-37, ATT-43, ATT-64/65."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.attribution import (
    FIT_INSUFFICIENT_DATA,
    MODELS,
    AttributionSettings,
    FitInput,
    Journey,
    ModelFit,
    ModelResult,
    Touchpoint,
    apply_revenue,
    attribute,
    data_driven_shares,
    time_decay_raw,
)

CONV = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
DEFAULT = AttributionSettings()

# ATT-64: organic search 6 Nov 15:00, Facebook 13 Nov 15:00, email 20 Nov 14:48; 99.99 USD at 20 Nov 15:00.
EXAMPLE = Journey(
    (
        Touchpoint("sess_a1", "organic_search", datetime(2026, 11, 6, 15, 0, tzinfo=UTC)),
        Touchpoint("sess_a2", "paid_social", datetime(2026, 11, 13, 15, 0, tzinfo=UTC)),
        Touchpoint("sess_a3", "email", datetime(2026, 11, 20, 14, 48, tzinfo=UTC)),
    ),
    truncated=False,
)
MARKOV_EXAMPLE = {
    "organic_search": Decimal("0.533392"),
    "paid_social": Decimal("0.571450"),
    "email": Decimal("0.798658"),
}
SHAPLEY_EXAMPLE = {
    "email": Decimal("0.069916"),
    "organic_search": Decimal("0.027063"),
    "paid_social": Decimal("0.024654"),
}


def journey(*channels: str, step: timedelta = timedelta(days=1)) -> Journey:
    n = len(channels)
    return Journey(
        tuple(Touchpoint(f"s{i}", c, CONV - step * (n - i)) for i, c in enumerate(channels)), truncated=False
    )


def units(result: ModelResult) -> list[int]:
    return [r.credit_units for r in result.rows]


def revenue(result: ModelResult) -> list[int | None]:
    return [r.revenue_minor for r in result.rows]


def test_ATT13_results_follow_canonical_order_and_enabled_models() -> None:
    settings = AttributionSettings(enabled_models=("shapley_value", "linear", "first_touch"))
    assert list(attribute(EXAMPLE, CONV, 9999, settings)) == ["first_touch", "linear", "shapley_value"]
    assert list(attribute(EXAMPLE, CONV, 9999, DEFAULT)) == list(MODELS)


def test_ATT13_positions() -> None:
    rows = attribute(journey("a", "b", "c", "d"), CONV, None, DEFAULT)["linear"].rows
    assert [r.position for r in rows] == ["first", "middle", "middle", "last"]
    assert [r.touchpoint_index for r in rows] == [0, 1, 2, 3]
    single = attribute(journey("a"), CONV, None, DEFAULT)
    assert all(res.rows[0].position == "first" for res in single.values())


def test_ATT12_empty_journey_has_no_rows_for_any_model() -> None:
    results = attribute(Journey((), truncated=False), CONV, 9999, DEFAULT)
    assert list(results) == list(MODELS)
    assert all(r.rows == () and r.fallback is None for r in results.values())


def test_ATT64_example_credits_and_revenue() -> None:
    fits = {"markov_chain": MARKOV_EXAMPLE, "shapley_value": SHAPLEY_EXAMPLE}
    results = attribute(EXAMPLE, CONV, 9999, DEFAULT, fits)
    expected = {
        "first_touch": ([10000], [9999]),
        "last_touch": ([10000], [9999]),
        "linear": ([3333, 3333, 3334], [3333, 3333, 3333]),
        "time_decay": ([1429, 2859, 5712], [1429, 2859, 5711]),
        "u_shaped": ([4000, 2000, 4000], [3999, 2000, 4000]),
        "participation": ([10000] * 3, [9999] * 3),
        # Shares from the 6-dp values printed in ATT-64 (the stored fit has 12 dp).
        "markov_chain": ([2802, 3002, 4196], [2802, 3002, 4195]),
        "shapley_value": ([2225, 2027, 5748], [2225, 2027, 5747]),
    }
    for model, (credit_units, revenue_minor) in expected.items():
        assert units(results[model]) == credit_units, model
        assert revenue(results[model]) == revenue_minor, model
        assert results[model].fallback is None
    assert results["first_touch"].rows[0].session_id == "sess_a1"
    assert results["last_touch"].rows[0].session_id == "sess_a3"


def test_ATT15_ATT16_single_row_models() -> None:
    results = attribute(journey("email", "paid_search", "email"), CONV, 100, DEFAULT)
    first, last = results["first_touch"].rows, results["last_touch"].rows
    assert len(first) == 1 and first[0].touchpoint_index == 0 and first[0].position == "first"
    assert len(last) == 1 and last[0].touchpoint_index == 2 and last[0].position == "last"
    assert first[0].revenue_minor == last[0].revenue_minor == 100


def test_ATT17_linear_repeated_channels_get_own_rows() -> None:
    result = attribute(journey("email", "email", "email"), CONV, 1000, DEFAULT)["linear"]
    assert units(result) == [3333, 3333, 3334]
    assert revenue(result) == [333, 333, 334]


def test_ATT18_time_decay_examples() -> None:
    ages = journey("a", "b", "c", step=timedelta(days=7))  # ages 21, 14, 7 days
    tps = (
        Touchpoint("x", "a", CONV - timedelta(days=14)),
        Touchpoint("y", "b", CONV - timedelta(days=7)),
        Touchpoint("z", "c", CONV),
    )
    result = attribute(Journey(tps, truncated=False), CONV, None, DEFAULT)["time_decay"]
    assert units(result) == [1429, 2857, 5714]
    assert units(attribute(ages, CONV, None, DEFAULT)["time_decay"]) == [1429, 2857, 5714]


def test_ATT18_time_decay_uses_50_digit_decimal_and_sums_to_one() -> None:
    raw = time_decay_raw(EXAMPLE.touchpoints, CONV, 7)
    assert [round(r, 6) for r in raw] == [Decimal("0.142925"), Decimal("0.285849"), Decimal("0.571226")]
    assert all(len(r.as_tuple().digits) <= 50 for r in raw)
    assert abs(sum(raw, Decimal(0)) - 1) < Decimal("1e-45")


def test_ATT18_single_touchpoint_and_equal_ages() -> None:
    assert units(attribute(journey("a"), CONV, None, DEFAULT)["time_decay"]) == [10000]
    at = CONV - timedelta(days=1)
    tps = tuple(Touchpoint(f"s{i}", c, at) for i, c in enumerate(["a", "b", "c"]))
    raw = time_decay_raw(tps, CONV, 7)
    assert raw[0] == raw[1] == raw[2]
    assert units(attribute(Journey(tps, truncated=False), CONV, None, DEFAULT)["time_decay"]) == [
        3333,
        3333,
        3334,
    ]


def test_ATT18_half_life_one_day() -> None:
    # One hour apart with h = 1 d: weights differ by 2^(1/24), so 0.4928 / 0.5072.
    tps = (
        Touchpoint("a", "x", CONV - timedelta(days=2, hours=1)),
        Touchpoint("b", "y", CONV - timedelta(days=2)),
    )
    settings = AttributionSettings(time_decay_half_life_days=1)
    assert units(attribute(Journey(tps, truncated=False), CONV, None, settings)["time_decay"]) == [4928, 5072]


@pytest.mark.parametrize(
    ("n", "first", "last", "expected"),
    [
        (1, "0.40", "0.40", [10000]),
        (2, "0.40", "0.40", [5000, 5000]),
        (2, "0.30", "0.50", [3750, 6250]),
        (2, "0", "0", [5000, 5000]),
        (3, "0.40", "0.40", [4000, 2000, 4000]),
        (4, "0.40", "0.40", [4000, 1000, 1000, 4000]),
        (5, "0.40", "0.40", [4000, 666, 667, 667, 4000]),
        (4, "0.30", "0.50", [3000, 1000, 1000, 5000]),
        (3, "0.50", "0.50", [5000, 0, 5000]),
        (3, "0", "0", [0, 10000, 0]),
    ],
)
def test_ATT19_u_shaped(n: int, first: str, last: str, expected: list[int]) -> None:
    settings = AttributionSettings(u_shaped_first_share=Decimal(first), u_shaped_last_share=Decimal(last))
    channels = [f"c{i}" for i in range(n)]
    assert units(attribute(journey(*channels), CONV, None, settings)["u_shaped"]) == expected


def test_ATT20_participation_one_row_per_channel_full_revenue() -> None:
    result = attribute(journey("organic", "email", "organic", "email", "paid"), CONV, 8000, DEFAULT)[
        "participation"
    ]
    assert [(r.session_id, r.channel, r.position) for r in result.rows] == [
        ("s0", "organic", "first"),
        ("s1", "email", "middle"),
        ("s4", "paid", "last"),
    ]
    assert units(result) == [10000] * 3
    assert revenue(result) == [8000] * 3


def test_ATT21_each_touchpoint_of_a_channel_gets_an_equal_split() -> None:
    values = {"a": Decimal("0.6"), "b": Decimal("1")}
    assert data_driven_shares(["a", "b", "a"], values) is not None
    result = attribute(journey("a", "b", "a"), CONV, 1000, DEFAULT, {"markov_chain": values})["markov_chain"]
    # s(a) = 0.375 split over two sessions, s(b) = 0.625.
    assert units(result) == [1875, 6250, 1875]
    assert revenue(result) == [187, 625, 188]
    assert result.fallback is None


def test_ATT21_channel_absent_from_fit_gets_zero_row() -> None:
    values = {"a": Decimal("0.6"), "b": Decimal("1")}
    result = attribute(journey("a", "video", "b"), CONV, 1000, DEFAULT, {"markov_chain": values})[
        "markov_chain"
    ]
    assert units(result) == [3750, 0, 6250]
    assert [r.channel for r in result.rows] == ["a", "video", "b"]


def test_ATT22_negative_values_are_clamped_to_zero() -> None:
    values = {"direct": Decimal("-0.136931"), "email": Decimal("-0.004064"), "paid_search": Decimal("0.5323")}
    result = attribute(
        journey("direct", "email", "paid_search"), CONV, None, DEFAULT, {"shapley_value": values}
    )
    assert units(result["shapley_value"]) == [0, 0, 10000]


def test_ATT22_symmetric_values_keep_an_exact_tie() -> None:
    values = {c: Decimal("0.142857142857") for c in "abc"}
    result = attribute(journey("a", "b", "c"), CONV, 9999, DEFAULT, {"shapley_value": values})
    assert units(result["shapley_value"]) == [3333, 3333, 3334]


def test_ATT32_no_fit_falls_back_to_linear_fit_pending() -> None:
    results = attribute(EXAMPLE, CONV, 9999, DEFAULT)
    for model in ("markov_chain", "shapley_value"):
        assert results[model].fallback == "linear"
        assert results[model].fallback_reason == "fit_pending"
        assert units(results[model]) == units(results["linear"])
        assert revenue(results[model]) == revenue(results["linear"])
        assert [r.session_id for r in results[model].rows] == ["sess_a1", "sess_a2", "sess_a3"]


def test_ATT32_insufficient_data_fit_falls_back() -> None:
    fits: dict[str, FitInput] = {
        "markov_chain": ModelFit(status=FIT_INSUFFICIENT_DATA),
        "shapley_value": SHAPLEY_EXAMPLE,
    }
    results = attribute(EXAMPLE, CONV, 9999, DEFAULT, fits)
    assert results["markov_chain"].fallback_reason == "insufficient_data"
    assert units(results["markov_chain"]) == [3333, 3333, 3334]
    assert results["shapley_value"].fallback is None


def test_ATT32_no_positive_value_falls_back() -> None:
    fits = {"markov_chain": {"video": Decimal(0), "ai": Decimal("-0.2")}}
    result = attribute(journey("video", "ai"), CONV, 1000, DEFAULT, fits)["markov_chain"]
    assert (result.fallback, result.fallback_reason) == ("linear", "no_positive_value")
    assert units(result) == [5000, 5000]
    assert data_driven_shares(["video", "ai"], {}) is None


def test_ATT32_unknown_fit_status_is_an_error() -> None:
    with pytest.raises(ValueError):
        attribute(EXAMPLE, CONV, None, DEFAULT, {"markov_chain": ModelFit(status="stale")})


def test_ATT36_no_revenue_gives_null_revenue_credits() -> None:
    results = attribute(EXAMPLE, CONV, None, DEFAULT)
    assert all(r.revenue_minor is None for res in results.values() for r in res.rows)


def test_ATT37_revenue_from_stored_units_not_raw_credits() -> None:
    # 0.01 USD linear over three: raw shares would round to 0/0/0 + 1 anywhere; units give the last.
    assert revenue(attribute(journey("a", "b", "c"), CONV, 1, DEFAULT)["linear"]) == [0, 0, 1]


def test_ATT38_refund_resplits_revenue_and_keeps_credits() -> None:
    fresh = attribute(EXAMPLE, CONV, 9999, DEFAULT)
    refunded = {m: apply_revenue(r, 5999) for m, r in fresh.items()}
    assert revenue(refunded["linear"]) == [1999, 2000, 2000]
    assert revenue(refunded["participation"]) == [5999] * 3
    assert all(units(refunded[m]) == units(fresh[m]) for m in MODELS)
    assert apply_revenue(fresh["markov_chain"], 5999).fallback_reason == "fit_pending"
    assert revenue(apply_revenue(fresh["linear"], None)) == [None, None, None]


def test_ATT43_inherited_rows_take_the_inheritors_revenue() -> None:
    acquisition = attribute(EXAMPLE, CONV, 9999, DEFAULT)
    payment = {m: apply_revenue(r, 4900) for m, r in acquisition.items()}
    assert revenue(payment["linear"]) == [1633, 1633, 1634]
    assert [r.session_id for r in payment["linear"].rows] == ["sess_a1", "sess_a2", "sess_a3"]


def test_ATT37_fresh_attribution_equals_resplit_of_its_own_rows() -> None:
    fresh = attribute(EXAMPLE, CONV, 12345, DEFAULT)
    assert all(apply_revenue(r, 12345) == r for r in fresh.values())


def test_credit_is_the_stored_4dp_decimal() -> None:
    rows = attribute(EXAMPLE, CONV, None, DEFAULT)["linear"].rows
    assert [str(r.credit) for r in rows] == ["0.3333", "0.3333", "0.3334"]
    assert str(attribute(EXAMPLE, CONV, None, DEFAULT)["first_touch"].rows[0].credit) == "1.0000"


def test_negative_revenue_is_rejected() -> None:
    with pytest.raises(ValueError):
        attribute(EXAMPLE, CONV, -1, DEFAULT)


def test_ATT10_full_journey_of_1000_sums_exactly() -> None:
    channels = [f"ch{i % 12:02d}" for i in range(1000)]
    big = journey(*channels, step=timedelta(minutes=20))
    fits = {"markov_chain": {f"ch{i:02d}": Decimal(i) / 13 for i in range(12)}}
    results = attribute(big, CONV, 99_999_999_999_999, DEFAULT, fits)
    assert all(sum(units(results[m])) == 10000 for m in MODELS if m != "participation")
