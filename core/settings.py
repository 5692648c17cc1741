"""Account settings as the processors see them (attribution.md ATT-1, sessions.md REF-2/REF-4/BOT-2/ID-7).

Stored as one JSON document per account; unknown or missing keys take the defaults, so adding a setting never
needs a data migration.
"""

from __future__ import annotations

import dataclasses
import decimal
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.attribution import MODELS, AttributionSettings
from core.channels import SiteConfig
from core.money import is_active_currency
from core.storage.models import Account, AccountSettings

DEFAULTS: dict[str, Any] = {
    "lookback_days": 30,
    "journey_reset": "none",
    "direct_burst_collapse": True,
    "time_decay_half_life_days": 7,
    "u_shaped_first_share": "0.40",
    "u_shaped_last_share": "0.40",
    "markov_order": 1,
    "fit_window_days": 90,
    "min_conversions": 100,
    "min_journeys": 1000,
    "currency": "USD",
    "timezone": "UTC",
    "enabled_models": list(MODELS),
    "site_domains": [],
    "referral_exclusions": [],
    "channel_sources": {},
    "spam_referrers": [],
    "default_country_code": None,
}


@dataclass(frozen=True)
class AccountConfig:
    attribution: AttributionSettings
    site: SiteConfig
    currency: str
    default_country_code: str | None
    config_versions: dict[str, int]
    monthly_event_quota: int | None = None  # API-33: usage is counted only for accounts with a quota
    fit_window_days: int = 90  # ATT-1: the training window of the data-driven fits
    timezone: str = "UTC"  # reports' days (api.md API-120, dashboard.md DSH-20)


def config_from(raw: dict[str, Any], versions: dict[str, Any] | None = None) -> AccountConfig:
    s = {**DEFAULTS, **(raw or {})}
    attribution = AttributionSettings(
        lookback_days=int(s["lookback_days"]),
        journey_reset=str(s["journey_reset"]),
        direct_burst_collapse=bool(s["direct_burst_collapse"]),
        time_decay_half_life_days=int(s["time_decay_half_life_days"]),
        u_shaped_first_share=Decimal(str(s["u_shaped_first_share"])),
        u_shaped_last_share=Decimal(str(s["u_shaped_last_share"])),
        markov_order=int(s["markov_order"]),
        min_conversions=int(s["min_conversions"]),
        min_journeys=int(s["min_journeys"]),
        enabled_models=tuple(m for m in MODELS if m in s["enabled_models"]),
    )
    site = SiteConfig(
        site_domains=tuple(s["site_domains"]),
        referral_exclusions=tuple(s["referral_exclusions"]),
        channel_sources=dict(s["channel_sources"]),
        spam_referrers=tuple(s["spam_referrers"]),
    )
    return AccountConfig(
        attribution=attribution,
        site=site,
        currency=str(s["currency"]),
        default_country_code=s["default_country_code"],
        config_versions={m: int((versions or {}).get(m, 1)) for m in MODELS},
        fit_window_days=int(s["fit_window_days"]),
        timezone=str(s["timezone"]),
    )


def load_config(db: Session, account_id: str) -> AccountConfig:
    row = db.execute(
        sa.select(AccountSettings.settings, AccountSettings.config_versions, Account.monthly_event_quota)
        .select_from(Account)
        .outerjoin(AccountSettings, AccountSettings.account_id == Account.id)
        .where(Account.id == account_id)
    ).first()
    if row is None:
        return config_from({})
    config = config_from(row[0] or {}, row[1] or {})
    return dataclasses.replace(config, monthly_event_quota=row[2])


# ATT-2: which models' config_version a change of each setting increments ("Affects" of ATT-1).
AFFECTS: dict[str, tuple[str, ...]] = {
    "lookback_days": MODELS,
    "journey_reset": MODELS,
    "direct_burst_collapse": MODELS,
    "time_decay_half_life_days": ("time_decay",),
    "u_shaped_first_share": ("u_shaped",),
    "u_shaped_last_share": ("u_shaped",),
    "markov_order": ("markov_chain",),
    "fit_window_days": ("markov_chain", "shapley_value"),
    "min_conversions": ("markov_chain", "shapley_value"),
    "min_journeys": ("markov_chain", "shapley_value"),
}
JOURNEY_SETTINGS = frozenset({"lookback_days", "journey_reset", "direct_burst_collapse"})


class SettingsError(ValueError):
    """A rejected settings change; the message names the field and what is allowed (nothing was stored)."""


@dataclass(frozen=True)
class SettingsChange:
    """What a stored change means for attribution: the models whose version moved (ATT-2, ATT-51)."""

    models: tuple[str, ...]  # canonical order
    journey_changed: bool
    newly_enabled: tuple[str, ...]


_INTEGER = ("lookback_days", "time_decay_half_life_days", "markov_order", "min_conversions", "min_journeys")


def _validated(merged: dict[str, Any]) -> None:
    for name in _INTEGER:  # config_from casts; a change must already be an integer
        if isinstance(merged[name], bool) or not isinstance(merged[name], int):
            raise SettingsError(f"{name} must be an integer, got {merged[name]!r}")
    if not isinstance(merged["direct_burst_collapse"], bool):
        raise SettingsError(f"direct_burst_collapse must be true or false, got {merged['direct_burst_collapse']!r}")
    try:
        config_from(merged)
    except (ValueError, TypeError, decimal.InvalidOperation) as exc:
        raise SettingsError(str(exc)) from exc
    window = merged["fit_window_days"]
    if isinstance(window, bool) or not isinstance(window, int) or not 7 <= window <= 365:
        raise SettingsError(f"fit_window_days must be an integer from 7 to 365, got {window!r}")
    if not is_active_currency(str(merged["currency"])):
        raise SettingsError(f"currency must be an active ISO 4217 code, got {merged['currency']!r}")
    try:
        ZoneInfo(str(merged["timezone"]))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SettingsError(f"timezone must be an IANA time zone name, got {merged['timezone']!r}") from exc
    models = merged["enabled_models"]
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise SettingsError("enabled_models must be a list of model names")


def change_settings(db: Session, account_id: str, changes: dict[str, Any]) -> SettingsChange:
    """ATT-1/ATT-2: validate, store, and increment the config_version of every affected model.

    Unknown keys and invalid values raise :class:`SettingsError` before anything is written.
    """
    unknown = sorted(set(changes) - set(DEFAULTS))
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]}; allowed: {', '.join(sorted(DEFAULTS))}")
    row = db.get(AccountSettings, account_id)
    now = datetime.now(UTC)
    if row is None:
        row = AccountSettings(account_id=account_id, settings={}, config_versions={}, updated_at=now)
        db.add(row)
    before = {**DEFAULTS, **row.settings}
    merged = {**before, **changes}
    _validated(merged)
    if "currency" in changes:
        merged["currency"] = str(merged["currency"]).upper()
    moved = {k for k in changes if merged[k] != before[k]}
    bumped = {m for k in moved for m in AFFECTS.get(k, ())}
    newly = tuple(m for m in MODELS if m in merged["enabled_models"] and m not in before["enabled_models"])
    bumped.update(newly)
    versions = dict(row.config_versions or {})
    for model in bumped:
        versions[model] = int(versions.get(model, 1)) + 1
    row.settings = {**row.settings, **{k: merged[k] for k in changes}}
    row.config_versions = versions
    row.updated_at = now
    return SettingsChange(tuple(m for m in MODELS if m in bumped), bool(moved & JOURNEY_SETTINGS), newly)


def save_settings(db: Session, account_id: str, changes: dict[str, Any]) -> None:
    """Store settings without reattributing (tests and seeding); see :func:`change_settings`."""
    change_settings(db, account_id, changes)
