"""Per-installation settings (shopify.md SHP-99): defaults, validation, and what a change must re-run."""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULTS", "settings_of", "validate_settings"]

DEFAULTS: dict[str, Any] = {
    "revenue_basis": "total",
    "offline_orders": "include_unattributed",
    "exclude_test_orders": False,
    "journey_summary": False,
}
CHOICES: dict[str, tuple[Any, ...]] = {
    "revenue_basis": ("total", "subtotal"),
    "offline_orders": ("include_unattributed", "include_identified", "exclude"),
    "exclude_test_orders": (True, False),
    "journey_summary": (True, False),
    "environment": ("live", "test"),
}


def settings_of(installation: Any) -> dict[str, Any]:
    """The effective settings: stored values over the defaults, plus the installation's environment."""
    stored = installation.settings or {}
    merged = {key: stored.get(key, default) for key, default in DEFAULTS.items()}
    merged["environment"] = installation.environment
    return merged


def validate_settings(changes: object) -> tuple[dict[str, Any], list[str]]:
    """The accepted changes and one message per invalid field, naming the field and what is allowed."""
    if not isinstance(changes, dict):
        return {}, ["body: must be a JSON object of settings"]
    accepted: dict[str, Any] = {}
    errors: list[str] = []
    for key, value in changes.items():
        allowed = CHOICES.get(key)
        if allowed is None:
            errors.append(f"{key}: unknown setting (allowed: {', '.join(CHOICES)})")
        elif not any(value is choice or (isinstance(choice, str) and value == choice) for choice in allowed):
            errors.append(f"{key}: must be one of {', '.join(str(c).lower() for c in allowed)}")
        else:
            accepted[key] = value
    return accepted, errors
