"""The Shopify Admin API version this app speaks (shopify.md SHP-6, SHP-97) and whether it is still supported.

Shopify releases a stable version each quarter, named after its month (`2026-10` on 2026-10-01), and supports it
for at least 12 months. One constant names the version: the gateway's Admin API calls default to it
(`SHOPIFY_API_VERSION` overrides it), and `tests/unit/connectors/shopify/test_app_config.py` holds the shipped
`shopify.app.toml` to it. The worker logs a warning and `/api/v1/health?deep=1` reports it once the configured
version is more than 12 months old (docs/shopify.md, "Moving to the next API version").
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

__all__ = ["API_VERSION", "SUPPORT_MONTHS", "VersionStatus", "configured_version_status", "version_status",
           "warn_if_unsupported"]

log = logging.getLogger("mbuzz.shopify")

API_VERSION = "2026-10"  # the newest stable version as of 2026-12
SUPPORT_MONTHS = 12
_VERSION = re.compile(r"^(\d{4})-(01|04|07|10)$")


@dataclass(frozen=True)
class VersionStatus:
    """What the health check and the worker say about one configured version."""

    version: str
    supported: bool
    supported_until: date | None  # None when the name is not a stable version (`unstable`, a typo)
    message: str


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, day.day)


def version_status(version: str, today: date | datetime) -> VersionStatus:
    """Whether `version` is within Shopify's 12 months of support on `today` (a date, or a UTC datetime)."""
    day = today.date() if isinstance(today, datetime) else today
    match = _VERSION.match(version or "")
    if match is None:
        return VersionStatus(version, False, None,
                             f"SHOPIFY_API_VERSION {version!r} is not a stable Shopify API version "
                             f"(YYYY-01, -04, -07 or -10); use {API_VERSION}")
    until = _add_months(date(int(match.group(1)), int(match.group(2)), 1), SUPPORT_MONTHS)
    if day < until:
        return VersionStatus(version, True, until, f"Shopify API {version} is supported until {until.isoformat()}")
    return VersionStatus(version, False, until,
                         f"Shopify API {version} is older than {SUPPORT_MONTHS} months (support ended "
                         f"{until.isoformat()}); Shopify answers it with its oldest supported version. Move "
                         f"SHOPIFY_API_VERSION and shopify.app.toml to a newer version (docs/shopify.md)")


def configured_version_status(settings: Any, today: date | datetime) -> VersionStatus | None:
    """The status of the configured `SHOPIFY_API_VERSION`, or None when the Shopify app is not configured."""
    if not (settings.shopify_api_key and settings.shopify_api_secret):
        return None
    return version_status(settings.shopify_api_version, today)


def warn_if_unsupported(settings: Any, today: date | datetime) -> VersionStatus | None:
    """Logs a warning (logger `mbuzz.shopify`) when the configured version is past Shopify's support window."""
    status = configured_version_status(settings, today)
    if status is not None and not status.supported:
        log.warning("%s", status.message)
    return status
