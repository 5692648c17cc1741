"""Bearer-key authentication (api.md API-10..API-13, API-141).

Steps 1–3 are pure string checks; only a well-formed secret key reaches the database, and only after the
per-IP failed-authentication limiter allows it. While the database is unreachable a known key is served from
its last good cache entry (quality.md Q-22, docs/api.md API-13-D2); a revoked key is still refused at once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import current_app, g, request
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy.exc import OperationalError

from core import keycache
from core.accounts import KEY_PATTERN, KeyLookup, key_digest, lookup_key
from core.tenant import Tenant

MISSING = "Missing Authorization header"
PUBLISHABLE = (
    "Publishable keys (pk_...) only work on the Shopify pixel and sGTM collect endpoints; "
    "use a secret key (sk_test_... or sk_live_...)"
)
BAD_FORMAT = "Authorization header must be in format: Bearer sk_{env}_{key}"
PROBLEMS = {
    "unknown": "Invalid or expired API key",
    "revoked": "API key has been revoked",
    "suspended": "Account suspended",
}
_SCHEME = re.compile(r"(?i)bearer[ \t]+(\S+)")
log = logging.getLogger("mbuzz.auth")


class AuthFailure(Exception):
    def __init__(self, message: str, status: int = 401, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class Principal:
    tenant: Tenant
    account_name: str
    key_prefix: str
    key_id: str
    currency: str = "USD"
    monthly_event_quota: int | None = None


def presented_token() -> str | None:
    header = (request.headers.get("Authorization") or "").strip()
    match = _SCHEME.fullmatch(header)
    return match.group(1) if match else None


def token_digest() -> str:
    """Rate-limit key: the digest of the presented token, so limiting needs no database read (API-140)."""
    token = presented_token() or ""
    return "k:" + hashlib.sha256(token.encode()).hexdigest()


def client_ip() -> str:
    hops = current_app.config["MBUZZ"].settings.trusted_proxies
    if hops:
        forwarded = [p.strip() for p in request.headers.get("X-Forwarded-For", "").split(",") if p.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.remote_addr or "unknown"


class FailureLimiter:
    """API-141: failed authentications per client IP, checked before any key lookup.

    Counts live in Redis when configured so every worker sees them; if Redis fails, a per-process memory
    window takes over (like API-140's limits) rather than failing the request.
    """

    def __init__(self, rate: str, storage_uri: str, options: dict[str, str | int] | None = None,
                 key: Callable[[str], str] = lambda ip: ip) -> None:
        """`options` go to the storage (the Redis key prefix), `key` turns an address into the counted key (a
        keyed digest, so no raw IP is a Redis key: gateway.ratelimit)."""
        self._limit = parse(rate)
        self._key = key
        self._primary = MovingWindowRateLimiter(storage_from_string(storage_uri, **(options or {})))
        self._fallback = MovingWindowRateLimiter(storage_from_string("memory://"))

    def _call(self, method: str, ip: str) -> Any:
        key = self._key(ip)
        try:
            return getattr(self._primary, method)(self._limit, "authfail", key)
        except Exception:  # storage outage: never a 5xx because of the limiter
            return getattr(self._fallback, method)(self._limit, "authfail", key)

    def blocked(self, ip: str) -> int | None:
        if self._call("test", ip):
            return None
        reset, _remaining = self._call("get_window_stats", ip)
        return max(1, int(reset - time.time()) + 1)

    def record(self, ip: str) -> None:
        self._call("hit", ip)


def cached_lookup(services: Any, token: str) -> KeyLookup:
    """API-13: valid keys are cached in Redis; revocation marks them there. The database decides every other
    refusal, and only its unavailability lets a stale entry (the key's last good answer) stand in (Q-22)."""
    digest = key_digest(token)
    entry = _cached(services, digest)
    if entry is not None and entry.fresh:
        return entry.lookup
    try:
        with services.sessions.begin() as db:
            found = lookup_key(db, token)
    except OperationalError:
        if entry is None:
            raise  # a key never seen cannot be verified: 503
        log.warning("database unavailable; key %s served from its last good cache entry", entry.lookup.key_prefix)
        return entry.lookup
    if services.redis is not None and (found.problem is None or entry is not None):
        try:
            keycache.remember(services.redis, digest, found)
        except Exception:
            pass
    return found


def _cached(services: Any, digest: str) -> keycache.Cached | None:
    if services.redis is None:
        return None
    try:
        return keycache.cached(services.redis, digest)
    except Exception:  # Redis trouble: the database answers
        return None


def authenticate() -> Principal:
    header = (request.headers.get("Authorization") or "").strip()
    if not header:
        raise AuthFailure(MISSING)
    match = _SCHEME.fullmatch(header)
    token = match.group(1) if match else header.split()[-1]
    if token.startswith("pk_"):
        raise AuthFailure(PUBLISHABLE)
    if match is None or KEY_PATTERN.fullmatch(token) is None:
        raise AuthFailure(BAD_FORMAT)
    services = current_app.config["MBUZZ"]
    ip = client_ip()
    wait = services.auth_failures.blocked(ip)
    if wait is not None:
        raise AuthFailure("Rate limit exceeded", status=429, retry_after=wait)
    found = cached_lookup(services, token)
    if found.problem is not None:
        services.auth_failures.record(ip)
        raise AuthFailure(PROBLEMS[found.problem])
    assert found.account_id and found.environment and found.key_prefix and found.key_id
    principal = Principal(
        tenant=Tenant(found.account_id, found.environment),
        account_name=found.account_name or "",
        key_prefix=found.key_prefix,
        key_id=found.key_id,
        currency=found.currency,
        monthly_event_quota=found.monthly_event_quota,
    )
    g.principal = principal
    return principal
