"""Settings, read once from the environment (Heroku-style names)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from typing import Any

from connectors.shopify.api_version import API_VERSION as SHOPIFY_API_VERSION


def _int(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = int(raw)
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///mbuzz.db"
    redis_url: str | None = None
    secret_key: str = field(default_factory=lambda: secrets.token_hex(32))
    port: int = 5000
    sync_wait_ms: int = 3000
    log_partitions: int = 1  # MBUZZ_LOG_PARTITIONS: partitions per tenant's log (docs/pipeline.md Q-3-D1)
    ratelimit_ingest: str = "5000 per second"
    ratelimit_sync: str = "1000 per second"
    ratelimit_validate: str = "10 per second"
    ratelimit_data: str = "60 per minute"
    ratelimit_auth_failures: str = "20 per minute"
    ratelimit_sgtm: str = "6000 per minute"
    trusted_proxies: int = 0
    spam_referrers_file: str | None = None
    shopify_api_secret: str | None = None  # shopify.md SHP-6: webhooks are verified with it
    shopify_api_secret_previous: str | None = None  # accepted too while the secret is rotated (SHP-33)
    encryption_keys: tuple[str, ...] = ()  # MBUZZ_ENCRYPTION_KEYS: Fernet keys, newest first
    shopify_api_key: str | None = None  # the app's client id (SHP-6)
    shopify_api_version: str = SHOPIFY_API_VERSION  # SHP-6
    shopify_scopes: str = "read_orders,read_customers,write_pixels,read_customer_events"
    public_url: str = "http://127.0.0.1:5000"  # MBUZZ_PUBLIC_URL: the https base URL Shopify calls back
    shopify_auto_connect_account: str | None = None  # SHP-28 (c)
    # Where outbound Shopify calls go: `https://{shop}` in production; tests point it at a local fake Shopify
    # server (`{base}/{shop}`), so nothing reaches the network.
    shopify_outbound_base: str | None = None
    ratelimit_pixel_key: str = "3000 per minute"  # SHP-71
    ratelimit_pixel_ip: str = "120 per minute"

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        env = os.environ
        values: dict[str, Any] = {
            "database_url": env.get("DATABASE_URL") or "sqlite:///mbuzz.db",
            "redis_url": env.get("REDIS_URL") or None,
            "secret_key": env.get("SECRET_KEY") or secrets.token_hex(32),
            "port": _int("PORT", 5000, 1, 65535),
            "sync_wait_ms": _int("MBUZZ_SYNC_WAIT_MS", 3000, 0, 10000),
            "log_partitions": _int("MBUZZ_LOG_PARTITIONS", 1, 1, 64),
            "ratelimit_ingest": env.get("MBUZZ_RATELIMIT_INGEST") or "5000 per second",
            "ratelimit_sync": env.get("MBUZZ_RATELIMIT_SYNC") or "1000 per second",
            "ratelimit_validate": env.get("MBUZZ_RATELIMIT_VALIDATE") or "10 per second",
            "ratelimit_data": env.get("MBUZZ_RATELIMIT_DATA") or "60 per minute",
            "ratelimit_auth_failures": env.get("MBUZZ_RATELIMIT_AUTH_FAILURES") or "20 per minute",
            "ratelimit_sgtm": env.get("MBUZZ_RATE_SGTM") or "6000 per minute",
            "trusted_proxies": _int("MBUZZ_TRUSTED_PROXIES", 0, 0, 10),
            "spam_referrers_file": env.get("MBUZZ_SPAM_REFERRERS") or None,
            "shopify_api_secret": env.get("SHOPIFY_API_SECRET") or None,
            "shopify_api_secret_previous": env.get("SHOPIFY_API_SECRET_PREVIOUS") or None,
            "shopify_api_key": env.get("SHOPIFY_API_KEY") or None,
            "shopify_api_version": env.get("SHOPIFY_API_VERSION") or SHOPIFY_API_VERSION,
            "shopify_scopes": env.get("SHOPIFY_SCOPES") or cls.shopify_scopes,
            "public_url": (env.get("MBUZZ_PUBLIC_URL") or "http://127.0.0.1:5000").rstrip("/"),
            "shopify_auto_connect_account": env.get("MBUZZ_SHOPIFY_AUTO_CONNECT_ACCOUNT") or None,
            "shopify_outbound_base": env.get("MBUZZ_SHOPIFY_OUTBOUND_BASE") or None,
            "ratelimit_pixel_key": env.get("MBUZZ_RATE_PIXEL_KEY") or "3000 per minute",
            "ratelimit_pixel_ip": env.get("MBUZZ_RATE_PIXEL_IP") or "120 per minute",
            "encryption_keys": tuple(k.strip() for k in (env.get("MBUZZ_ENCRYPTION_KEYS") or "").split(",")
                                     if k.strip()),
        }
        values.update(overrides)
        return cls(**values)
