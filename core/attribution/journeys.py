"""Touchpoints, settings and journey construction (attribution.md ATT-1, ATT-3, ATT-6..ATT-11).

Finding the candidate sessions (ATT-4/ATT-5 scope) and the reset instant R (ATT-7) needs the database and
stays with the caller; everything from the candidate list on is a pure function here, so the conversion
processor, reattribution and the fit corpus builder (ATT-23) all build identical journeys.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

__all__ = [
    "BURST_WINDOW",
    "DATA_DRIVEN",
    "DIRECT",
    "JOURNEY_RESETS",
    "MAX_TOUCHPOINTS",
    "MODELS",
    "AttributionSettings",
    "Journey",
    "Touchpoint",
    "journey_for",
]

# ATT-13 canonical order; results and responses always follow it.
MODELS: tuple[str, ...] = (
    "first_touch",
    "last_touch",
    "linear",
    "time_decay",
    "u_shaped",
    "participation",
    "markov_chain",
    "shapley_value",
)
DATA_DRIVEN: tuple[str, ...] = ("markov_chain", "shapley_value")
JOURNEY_RESETS: tuple[str, ...] = ("none", "any_conversion", "same_type")
DIRECT = "direct"
BURST_WINDOW = timedelta(seconds=300)  # ATT-9, inclusive
MAX_TOUCHPOINTS = 1_000  # ATT-10


@dataclass(frozen=True)
class Touchpoint:
    """One qualified session as attribution sees it (ATT-3)."""

    session_id: str
    channel: str
    at: datetime  # session.started_at, tz-aware
    visitor_id: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None

    def __post_init__(self) -> None:
        # A naive datetime would only fail later, inside a sort or a window comparison.
        if self.at.utcoffset() is None:
            raise ValueError(f"touchpoint {self.session_id}: `at` must be timezone-aware")


@dataclass(frozen=True)
class AttributionSettings:
    """The attribution settings of ATT-1 that the engine reads (currency and timezone are not its concern).

    Validated on construction with the ATT-1 ranges so an impossible value (first + last share above 1, an
    unknown model) fails loudly instead of producing credits that do not sum to 1.
    """

    lookback_days: int = 30
    journey_reset: str = "none"
    direct_burst_collapse: bool = True
    time_decay_half_life_days: int = 7
    u_shaped_first_share: Decimal = Decimal("0.40")
    u_shaped_last_share: Decimal = Decimal("0.40")
    markov_order: int = 1
    min_conversions: int = 100
    min_journeys: int = 1000
    enabled_models: tuple[str, ...] = MODELS

    def __post_init__(self) -> None:
        _check_range("lookback_days", self.lookback_days, 1, 365)
        _check_range("time_decay_half_life_days", self.time_decay_half_life_days, 1, 90)
        _check_range("markov_order", self.markov_order, 1, 3)
        _check_range("min_conversions", self.min_conversions, 1, 1_000_000)
        _check_range("min_journeys", self.min_journeys, 1, 10_000_000)
        if self.journey_reset not in JOURNEY_RESETS:
            allowed = ", ".join(JOURNEY_RESETS)
            raise ValueError(f"journey_reset must be one of {allowed}, got {self.journey_reset!r}")
        for name in ("u_shaped_first_share", "u_shaped_last_share"):
            share = getattr(self, name)
            if not isinstance(share, Decimal) or not share.is_finite() or not 0 <= share <= 1:
                raise ValueError(f"{name} must be a decimal between 0 and 1, got {share!r}")
            if share != share.quantize(Decimal("0.01")):
                raise ValueError(f"{name} must have at most 2 decimals, got {share}")
        if self.u_shaped_first_share + self.u_shaped_last_share > 1:
            raise ValueError("u_shaped_first_share + u_shaped_last_share must be at most 1")
        if not self.enabled_models:
            raise ValueError("enabled_models must not be empty")
        unknown = [m for m in self.enabled_models if m not in MODELS]
        if unknown:
            raise ValueError(f"enabled_models has unknown models: {', '.join(unknown)}")


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")


@dataclass(frozen=True)
class Journey:
    """The kept touchpoints in journey order (ATT-8) and whether ATT-10 cut older ones."""

    touchpoints: tuple[Touchpoint, ...]
    truncated: bool = False

    @property
    def session_ids(self) -> tuple[str, ...]:
        """`journey_session_ids` of ATT-11."""
        return tuple(t.session_id for t in self.touchpoints)


def journey_for(
    candidates: Iterable[Touchpoint],
    converted_at: datetime,
    settings: AttributionSettings,
    reset_at: datetime | None = None,
) -> Journey:
    """Build a conversion's journey from the qualified sessions of its scope (ATT-6..ATT-10).

    `reset_at` is R of ATT-7 (the latest other conversion strictly before this one that counts under
    `settings.journey_reset`); it is ignored when `journey_reset` is "none", so callers may pass it
    unconditionally.
    """
    if converted_at.utcoffset() is None:
        raise ValueError("converted_at must be timezone-aware")
    start = converted_at - timedelta(days=settings.lookback_days)
    reset = reset_at if settings.journey_reset != "none" else None
    # ATT-6 both bounds inclusive; ATT-7 a session starting exactly at R is excluded.
    kept = [t for t in candidates if start <= t.at <= converted_at and (reset is None or t.at > reset)]
    # ATT-8: started_at, then public session id by code point (Python compares str by code point).
    kept.sort(key=lambda t: (t.at, t.session_id))
    if settings.direct_burst_collapse:
        kept = _collapse_direct_bursts(kept)
    if len(kept) > MAX_TOUCHPOINTS:  # ATT-10: keep the latest; positions refer to what is kept
        return Journey(tuple(kept[-MAX_TOUCHPOINTS:]), truncated=True)
    return Journey(tuple(kept), truncated=False)


def _collapse_direct_bursts(ordered: list[Touchpoint]) -> list[Touchpoint]:
    """ATT-9: drop a direct session within 300 s of the last kept one, measured to the last *kept* start."""
    if not ordered:
        return ordered
    result = [ordered[0]]
    last_kept_at = ordered[0].at
    for t in ordered[1:]:
        if t.channel == DIRECT and t.at - last_kept_at <= BURST_WINDOW:
            continue
        result.append(t)
        last_kept_at = t.at
    return result
