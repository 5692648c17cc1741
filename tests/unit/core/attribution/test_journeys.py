"""Journey construction: ATT-6 window, ATT-7 reset, ATT-8 order, ATT-9 burst collapse, ATT-10 cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.attribution import AttributionSettings, Touchpoint, journey_for

CONV = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
DEFAULT = AttributionSettings()


def tp(session_id: str, at: datetime, channel: str = "email") -> Touchpoint:
    return Touchpoint(session_id, channel, at)


def ids(touchpoints: tuple[Touchpoint, ...]) -> list[str]:
    return [t.session_id for t in touchpoints]


def test_ATT6_window_bounds_are_inclusive() -> None:
    edge = CONV - timedelta(days=30)
    journey = journey_for([tp("s1", edge), tp("s2", CONV)], CONV, DEFAULT)
    assert ids(journey.touchpoints) == ["s1", "s2"]


def test_ATT6_one_microsecond_outside_is_excluded_on_both_sides() -> None:
    early = CONV - timedelta(days=30, microseconds=1)
    late = CONV + timedelta(microseconds=1)
    assert journey_for([tp("s1", early), tp("s2", late)], CONV, DEFAULT).touchpoints == ()


def test_ATT6_lookback_days_setting() -> None:
    settings = AttributionSettings(lookback_days=7)
    sessions = [tp("s1", CONV - timedelta(days=8)), tp("s2", CONV - timedelta(days=6))]
    assert ids(journey_for(sessions, CONV, settings).touchpoints) == ["s2"]


def test_ATT7_reset_excludes_sessions_at_or_before_previous_conversion() -> None:
    reset = CONV - timedelta(days=10)
    sessions = [tp("s1", reset - timedelta(days=1)), tp("s2", reset), tp("s3", reset + timedelta(seconds=1))]
    settings = AttributionSettings(journey_reset="any_conversion")
    assert ids(journey_for(sessions, CONV, settings, reset).touchpoints) == ["s3"]
    same_type = AttributionSettings(journey_reset="same_type")
    assert ids(journey_for(sessions, CONV, same_type, reset).touchpoints) == ["s3"]


def test_ATT7_reset_at_is_ignored_when_reset_is_none() -> None:
    reset = CONV - timedelta(days=10)
    sessions = [tp("s1", reset - timedelta(days=1)), tp("s2", reset)]
    assert ids(journey_for(sessions, CONV, DEFAULT, reset).touchpoints) == ["s1", "s2"]


def test_ATT8_order_by_start_then_session_id_code_point() -> None:
    at = CONV - timedelta(days=1)
    sessions = [
        tp("sess_b", at),
        tp("sess_B", at),  # 'B' (U+0042) sorts before 'b' (U+0062)
        tp("sess_a", at - timedelta(seconds=1)),
    ]
    assert ids(journey_for(sessions, CONV, DEFAULT).touchpoints) == ["sess_a", "sess_B", "sess_b"]


def test_ATT8_input_order_does_not_matter() -> None:
    sessions = [tp(f"s{i}", CONV - timedelta(hours=i), "paid_search") for i in range(10)]
    forward = journey_for(sessions, CONV, DEFAULT)
    backward = journey_for(reversed(sessions), CONV, DEFAULT)
    assert forward == backward


def test_ATT9_burst_gap_is_measured_to_last_kept() -> None:
    start = CONV - timedelta(hours=1)
    sessions = [tp("search", start, "paid_search")] + [
        tp(f"d{m}", start + timedelta(minutes=m), "direct") for m in (4, 8, 12)
    ]
    assert ids(journey_for(sessions, CONV, DEFAULT).touchpoints) == ["search", "d8"]


def test_ATT9_exactly_300s_dropped_301s_kept() -> None:
    start = CONV - timedelta(hours=1)
    at_300 = [tp("a", start, "email"), tp("b", start + timedelta(seconds=300), "direct")]
    at_301 = [tp("a", start, "email"), tp("b", start + timedelta(seconds=301), "direct")]
    assert ids(journey_for(at_300, CONV, DEFAULT).touchpoints) == ["a"]
    assert ids(journey_for(at_301, CONV, DEFAULT).touchpoints) == ["a", "b"]


def test_ATT9_first_touch_direct_is_kept_and_non_direct_never_dropped() -> None:
    start = CONV - timedelta(hours=1)
    sessions = [
        tp("d0", start, "direct"),
        tp("e1", start + timedelta(seconds=10), "email"),
        tp("p2", start + timedelta(seconds=20), "paid_search"),
        tp("d3", start + timedelta(seconds=30), "direct"),
    ]
    assert ids(journey_for(sessions, CONV, DEFAULT).touchpoints) == ["d0", "e1", "p2"]


def test_ATT9_disabled_keeps_every_direct() -> None:
    start = CONV - timedelta(hours=1)
    sessions = [tp("a", start, "direct"), tp("b", start + timedelta(seconds=60), "direct")]
    settings = AttributionSettings(direct_burst_collapse=False)
    assert ids(journey_for(sessions, CONV, settings).touchpoints) == ["a", "b"]


def test_ATT9_collapse_runs_after_window() -> None:
    # The out-of-window email must not act as "last kept" for the direct just inside the window.
    edge = CONV - timedelta(days=30)
    sessions = [
        tp("old", edge - timedelta(seconds=10), "email"),
        tp("d", edge + timedelta(seconds=10), "direct"),
    ]
    assert ids(journey_for(sessions, CONV, DEFAULT).touchpoints) == ["d"]


def test_ATT10_cap_keeps_latest_1000_and_flags_truncated() -> None:
    sessions = [tp(f"s{i:04d}", CONV - timedelta(minutes=i), "email") for i in range(1005)]
    journey = journey_for(sessions, CONV, DEFAULT)
    assert journey.truncated
    assert len(journey.touchpoints) == 1000
    assert journey.touchpoints[0].session_id == "s0999"
    assert journey.touchpoints[-1].session_id == "s0000"


def test_ATT10_exactly_1000_is_not_truncated() -> None:
    sessions = [tp(f"s{i:04d}", CONV - timedelta(minutes=i), "email") for i in range(1000)]
    journey = journey_for(sessions, CONV, DEFAULT)
    assert not journey.truncated and len(journey.touchpoints) == 1000


def test_ATT10_cap_counts_after_burst_collapse() -> None:
    start = CONV - timedelta(days=10)
    sessions = [tp(f"e{i:04d}", start + timedelta(minutes=10 * i), "email") for i in range(1000)]
    sessions += [tp(f"d{i:04d}", start + timedelta(minutes=10 * i, seconds=1), "direct") for i in range(50)]
    journey = journey_for(sessions, CONV, DEFAULT)
    assert not journey.truncated and len(journey.touchpoints) == 1000


def test_ATT11_session_ids_in_journey_order() -> None:
    sessions = [tp("b", CONV - timedelta(days=1)), tp("a", CONV - timedelta(days=2))]
    assert journey_for(sessions, CONV, DEFAULT).session_ids == ("a", "b")


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError):
        Touchpoint("s", "email", datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        journey_for([], datetime(2026, 1, 1), DEFAULT)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lookback_days": 0},
        {"lookback_days": 366},
        {"journey_reset": "sometimes"},
        {"time_decay_half_life_days": 91},
        {"u_shaped_first_share": Decimal("0.6"), "u_shaped_last_share": Decimal("0.5")},
        {"u_shaped_first_share": Decimal("0.333")},
        {"u_shaped_last_share": Decimal("-0.1")},
        {"markov_order": 4},
        {"enabled_models": ()},
        {"enabled_models": ("linear", "magic")},
    ],
)
def test_ATT1_invalid_settings_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        AttributionSettings(**kwargs)  # type: ignore[arg-type]
