"""Settings, read once from the environment (Heroku-style names)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from typing import Any


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

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        env = os.environ
        values: dict[str, Any] = {
            "database_url": env.get("DATABASE_URL") or "sqlite:///mbuzz.db",
            "redis_url": env.get("REDIS_URL") or None,
            "secret_key": env.get("SECRET_KEY") or secrets.token_hex(32),
            "port": _int("PORT", 5000, 1, 65535),
            "sync_wait_ms": _int("MBUZZ_SYNC_WAIT_MS", 3000, 0, 10000),
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
            "encryption_keys": tuple(k.strip() for k in (env.get("MBUZZ_ENCRYPTION_KEYS") or "").split(",")
                                     if k.strip()),
        }
        values.update(overrides)
        return cls(**values)
