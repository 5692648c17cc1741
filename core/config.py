"""The process settings the core and the edge need, read from the environment once per process (issue 18 item 5).

Every entry point reads them once — the web app (`gateway.create_app`), the worker (`flask mbuzz worker`, or
`core.jobs.runtime()` in an RQ work horse started another way), the CLI — and passes them in; no core module reads
the environment at import. Connectors declare their own settings next to their code (e.g.
`connectors/shopify/config.py`); the gateway's `Settings` is all of them in one object (`gateway/config.py`).
Names are Heroku-style; the README's configuration table lists them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["CoreSettings", "env_float", "env_int", "env_text"]

N = TypeVar("N", int, float)


def env_int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer setting; a value outside [low, high] or not a number stops the process with the name."""
    return _number(env, name, default, low, high, int, "an integer")


def env_float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    """A number of seconds (or another positive quantity) within [low, high]."""
    return _number(env, name, default, low, high, float, "a number")


def _number(env: Mapping[str, str], name: str, default: N, low: N, high: N, parse: Callable[[str], N],
            what: str) -> N:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ValueError(f"{name} must be {what} between {_shown(low)} and {_shown(high)}, got {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {_shown(low)} and {_shown(high)}, got {_shown(value)}")
    return value


def _shown(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def env_text(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    """A text setting; empty counts as unset."""
    return env.get(name) or default


@dataclass(frozen=True)
class CoreSettings:
    database_url: str = "sqlite:///mbuzz.db"
    redis_url: str | None = None
    secret_key: str = field(default_factory=lambda: secrets.token_hex(32))
    port: int = 5000
    public_url: str = "http://127.0.0.1:5000"  # MBUZZ_PUBLIC_URL: the https base URL platforms call back
    sync_wait_ms: int = 3000
    log_partitions: int = 1  # MBUZZ_LOG_PARTITIONS: partitions per tenant's log (docs/pipeline.md Q-3-D1)
    encryption_keys: tuple[str, ...] = ()  # MBUZZ_ENCRYPTION_KEYS: Fernet keys, newest first
    ratelimit_ingest: str = "5000 per second"
    ratelimit_sync: str = "1000 per second"
    ratelimit_validate: str = "10 per second"
    ratelimit_data: str = "60 per minute"
    ratelimit_auth_failures: str = "20 per minute"
    trusted_proxies: int = 0
    spam_referrers_file: str | None = None
    redis_prefix: str = "mbuzz"  # MBUZZ_REDIS_PREFIX: every Redis key and RQ queue of this deployment
    key_cache_ttl_s: float = 60.0  # MBUZZ_KEY_CACHE_TTL_S: how long a verified key is fresh (core.keycache)
    drain_batch: int = 2000  # MBUZZ_DRAIN_BATCH: commands a drain reads at once (issue 16)
    drain_lock_ms: int = 30000  # MBUZZ_DRAIN_LOCK_MS: a crashed drainer's partition waits this long
    drain_lock_wait_ms: int = 5000  # MBUZZ_DRAIN_LOCK_WAIT_MS: Q-20, capped at half the partition lock
    event_wait_retry_s: float = 10.0  # MBUZZ_EVENT_WAIT_RETRY_S: API-93, how often a waiting conversion retries
    sweep_interval_s: float = 5.0  # MBUZZ_SWEEP_INTERVAL_S: the worker's crash-recovery sweep
    batch_recovery_s: float = 60.0  # MBUZZ_BATCH_RECOVERY_S: a reattribution batch no job holds is resumed after
    stats_every_s: float = 60.0  # MBUZZ_STATS_EVERY_S: planner statistics refreshed at most this often
    pg_idle_in_transaction_timeout_ms: int = 60000  # MBUZZ_PG_IDLE_IN_TRANSACTION_TIMEOUT_MS

    @property
    def drain_lock_wait(self) -> int:
        """Q-20: the longest a drain batch waits for a lock; below the partition lock's lifetime, so a waiting
        drain never loses its partition."""
        return min(self.drain_lock_wait_ms, self.drain_lock_ms // 2)

    @classmethod
    def env_values(cls, env: Mapping[str, str]) -> dict[str, Any]:
        """The fields set by the environment (a part of `gateway.config.Settings.from_env`)."""
        return {
            "database_url": env_text(env, "DATABASE_URL", "sqlite:///mbuzz.db"),
            "redis_url": env_text(env, "REDIS_URL"),
            "secret_key": env_text(env, "SECRET_KEY") or secrets.token_hex(32),
            "port": env_int(env, "PORT", 5000, 1, 65535),
            "public_url": (env_text(env, "MBUZZ_PUBLIC_URL") or "http://127.0.0.1:5000").rstrip("/"),
            "sync_wait_ms": env_int(env, "MBUZZ_SYNC_WAIT_MS", 3000, 0, 10000),
            "log_partitions": env_int(env, "MBUZZ_LOG_PARTITIONS", 1, 1, 64),
            "encryption_keys": tuple(k.strip() for k in (env.get("MBUZZ_ENCRYPTION_KEYS") or "").split(",")
                                     if k.strip()),
            "ratelimit_ingest": env_text(env, "MBUZZ_RATELIMIT_INGEST", cls.ratelimit_ingest),
            "ratelimit_sync": env_text(env, "MBUZZ_RATELIMIT_SYNC", cls.ratelimit_sync),
            "ratelimit_validate": env_text(env, "MBUZZ_RATELIMIT_VALIDATE", cls.ratelimit_validate),
            "ratelimit_data": env_text(env, "MBUZZ_RATELIMIT_DATA", cls.ratelimit_data),
            "ratelimit_auth_failures": env_text(env, "MBUZZ_RATELIMIT_AUTH_FAILURES", cls.ratelimit_auth_failures),
            "trusted_proxies": env_int(env, "MBUZZ_TRUSTED_PROXIES", 0, 0, 10),
            "spam_referrers_file": env_text(env, "MBUZZ_SPAM_REFERRERS"),
            "redis_prefix": env_text(env, "MBUZZ_REDIS_PREFIX", cls.redis_prefix),
            "key_cache_ttl_s": env_float(env, "MBUZZ_KEY_CACHE_TTL_S", 60.0, 0.0, 3600.0),
            "drain_batch": env_int(env, "MBUZZ_DRAIN_BATCH", 2000, 1, 100_000),
            "drain_lock_ms": env_int(env, "MBUZZ_DRAIN_LOCK_MS", 30000, 1000, 3_600_000),
            "drain_lock_wait_ms": env_int(env, "MBUZZ_DRAIN_LOCK_WAIT_MS", 5000, 100, 3_600_000),
            "event_wait_retry_s": env_float(env, "MBUZZ_EVENT_WAIT_RETRY_S", 10.0, 0.1, 3600.0),
            "sweep_interval_s": env_float(env, "MBUZZ_SWEEP_INTERVAL_S", 5.0, 0.1, 3600.0),
            "batch_recovery_s": env_float(env, "MBUZZ_BATCH_RECOVERY_S", 60.0, 0.1, 86400.0),
            "stats_every_s": env_float(env, "MBUZZ_STATS_EVERY_S", 60.0, 0.0, 86400.0),
            "pg_idle_in_transaction_timeout_ms": env_int(env, "MBUZZ_PG_IDLE_IN_TRANSACTION_TIMEOUT_MS", 60000, 0,
                                                         86_400_000),
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> CoreSettings:
        """The core's settings alone (a worker or tool that has no app); `overrides` win over the environment."""
        return cls(**{**cls.env_values(os.environ if env is None else env), **overrides})
