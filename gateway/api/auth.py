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

from core.accounts import KEY_PATTERN
from core.ratewindow import MemoryWindows, RedisWindows, Verdict, Window
from core.tenant import Tenant
from edge.http import client_ip
from edge.keys import cached_lookup

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
    def __init__(self, message: str, status: int = 401, retry_after: int | None = None,
                 verdict: Verdict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.verdict = verdict  # API-140's header figures of the limit that refused (API-141)


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


class FailureLimiter:
    """API-141: failed authentications per client IP, checked before any key lookup.

    Counts live in Redis when configured so every worker sees them (the counters of core.ratewindow, which the
    ingest append script also reads: core.admission); if Redis fails, a per-process memory window takes over
    (like API-140's limits) rather than failing the request.
    """

    def __init__(self, rate: str, client: Any = None, key: Callable[[str], str] = lambda ip: ip) -> None:
        """``key`` turns an address into the counted Redis key: under the prefix, a keyed digest of the address
        (no raw IP is a Redis key: gateway.ratelimit)."""
        self.window = Window.parse(rate)
        self.key = key
        self._primary = RedisWindows(client) if client is not None else None
        self._fallback = MemoryWindows()

    def _check(self, ip: str, hit: bool) -> Verdict:
        key, now_ms = self.key(ip), int(time.time() * 1000)
        if self._primary is not None:
            try:
                return self._primary.check(key, self.window, now_ms, hit)
            except Exception:  # storage outage: never a 5xx because of the limiter
                pass
        return self._fallback.check(key, self.window, now_ms, hit)

    def blocked(self, ip: str) -> Verdict | None:
        """The limit's verdict when ``ip`` may not try a key now, else None."""
        verdict = self._check(ip, hit=False)
        return None if verdict.allowed else verdict

    def record(self, ip: str) -> None:
        self._check(ip, hit=True)


def well_formed_token() -> str:
    """API-12 steps 1–3 on this request's ``Authorization`` header."""
    return token_of(request.headers.get("Authorization") or "")


def token_of(authorization: str) -> str:
    """API-12 steps 1–3, pure string checks: the presented secret key, or ``AuthFailure``."""
    header = authorization.strip()
    if not header:
        raise AuthFailure(MISSING)
    match = _SCHEME.fullmatch(header)
    token = match.group(1) if match else header.split()[-1]
    if token.startswith("pk_"):
        raise AuthFailure(PUBLISHABLE)
    if match is None or KEY_PATTERN.fullmatch(token) is None:
        raise AuthFailure(BAD_FORMAT)
    return token


def authenticate(token: str | None = None) -> Principal:
    """API-12 in full: the failed-authentication limiter (API-141), then the key's lookup (API-13)."""
    token = token or well_formed_token()
    services = current_app.config["MBUZZ"]
    ip = client_ip()
    refused = services.auth_failures.blocked(ip)
    if refused is not None:
        raise AuthFailure("Rate limit exceeded", status=429, retry_after=refused.retry_after, verdict=refused)
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
