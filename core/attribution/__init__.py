"""Per-conversion attribution engine: journeys, the eight models and their rounding (attribution.md)."""

from core.attribution.journeys import (
    DATA_DRIVEN,
    MODELS,
    AttributionSettings,
    Journey,
    Touchpoint,
    journey_for,
)
from core.attribution.models import (
    FALLBACK_LINEAR,
    FIT_INSUFFICIENT_DATA,
    FIT_PENDING,
    FIT_READY,
    NO_POSITIVE_VALUE,
    CreditRow,
    FitInput,
    ModelFit,
    ModelResult,
    apply_revenue,
    attribute,
    data_driven_shares,
    position_of,
    time_decay_raw,
)
from core.attribution.rounding import UNITS, largest_remainder_units, revenue_split, units_from_ratios

__all__ = [
    "DATA_DRIVEN",
    "FALLBACK_LINEAR",
    "FIT_INSUFFICIENT_DATA",
    "FIT_PENDING",
    "FIT_READY",
    "MODELS",
    "NO_POSITIVE_VALUE",
    "UNITS",
    "AttributionSettings",
    "CreditRow",
    "FitInput",
    "Journey",
    "ModelFit",
    "ModelResult",
    "Touchpoint",
    "apply_revenue",
    "attribute",
    "data_driven_shares",
    "journey_for",
    "largest_remainder_units",
    "position_of",
    "revenue_split",
    "time_decay_raw",
    "units_from_ratios",
]
