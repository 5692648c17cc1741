"""Per-installation settings (shopify.md SHP-99): defaults, validation, and what a change must re-run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from connectors.shopify.models import ShopifySettingsAudit
from core.ids import new_id
from core.storage.models import Installation

__all__ = ["DEFAULTS", "apply_settings", "settings_of", "validate_settings"]

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


def apply_settings(db: Session, installation: Installation, accepted: dict[str, Any], actor: str,
                   now: datetime) -> dict[str, Any]:
    """Store validated ``accepted`` changes on a locked ``installation``, one SHP-82 audit row per changed field
    naming ``actor`` (the Shopify staff user, or ``dashboard:<user id>``); returns the fields that changed.

    ``environment`` is stored on the installation itself; the caller re-runs the post-install job for it."""
    from connectors.shopify.install import connector_state

    before = settings_of(installation)
    changed = {k: v for k, v in accepted.items() if before.get(k) != v or type(before.get(k)) is not type(v)}
    for name, value in changed.items():
        db.add(ShopifySettingsAudit(id=new_id("aud", now), installation_id=installation.id,
                                    staff_user_id=actor[:64], field=name, old=before.get(name), new=value, at=now))
    stored = {**(installation.settings or {}), **{k: v for k, v in changed.items() if k != "environment"}}
    if "environment" in changed:
        installation.environment = changed["environment"]
        stored["_connector"] = {**connector_state(installation), "environment_pending": False}
    installation.settings = stored
    if changed:
        installation.updated_at = now
    return changed
