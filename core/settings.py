"""Account settings as the processors see them (attribution.md ATT-1, sessions.md REF-2/REF-4/BOT-2/ID-7).

Stored as one JSON document per account; unknown or missing keys take the defaults, so adding a setting never
needs a data migration.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.attribution import MODELS, AttributionSettings
from core.channels import SiteConfig
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


def save_settings(db: Session, account_id: str, changes: dict[str, Any]) -> None:
    row = db.get(AccountSettings, account_id)
    now = datetime.now(UTC)
    if row is None:
        row = AccountSettings(account_id=account_id, settings={}, config_versions={}, updated_at=now)
        db.add(row)
    row.settings = {**row.settings, **changes}
    row.updated_at = now
