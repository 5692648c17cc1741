"""Admission of the write endpoints by their append (`POST /events`, `/sessions`, `/conversions`, `/identify`;
issue 17 item 1; docs/api.md API-13-D3).

With Redis, a request that presents a key this process resolved in the last ``key_cache_ttl_s`` is admitted by the
append script itself (core.admission): failed-authentication block (API-141), the key's shared cache entry and
revocation mark (API-13), the per-key limit (API-140), then reservations and append — one round trip. A request
that appends nothing (a 400, a 402, a 422 without a record) is admitted by the same script with no commands
before its answer, so no answer ever skips a check. Whatever the script cannot decide goes the slow way: the
full authentication of ``gateway.api.auth`` (database, as before), then the script again.

Without Redis (inline mode, or Redis down: degraded) the request is authenticated the slow way and limited by
the per-process memory window, as API-140 says.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from core import keycache
from core.admission import Admission
from core.ratewindow import MemoryWindows, Verdict, Window
from gateway.api.auth import FailureLimiter, Principal


@dataclass(frozen=True, slots=True)
class _Remembered:
    principal: Principal
    until: float  # monotonic


class AdmissionGate:
    """Per process: which tenant each recently verified key names (only to name the script's keys: the verdict is
    always the shared entry's), the per-key limit of each scope (API-140), and their memory fallback."""

    MAX_REMEMBERED = 10_000

    def __init__(self, rates: dict[str, str], failures: FailureLimiter, key_prefix: str, with_redis: bool,
                 fresh_s: float) -> None:
        """``rates``: scope → limit, e.g. ``{"ingest": "5000 per second", "sync": "1000 per second"}``."""
        self.windows = {scope: Window.parse(rate) for scope, rate in rates.items()}
        self.with_redis = with_redis
        self.fresh_s = fresh_s  # how long a verified key is fresh (CoreSettings.key_cache_ttl_s, API-13-D1)
        self._failures = failures
        self._key_prefix = key_prefix
        self._memory = MemoryWindows()
        self._remembered: dict[str, _Remembered] = {}
        self._lock = threading.Lock()

    def remembered(self, digest: str) -> Principal | None:
        """The principal the key of ``digest`` resolved to here less than ``fresh_s`` ago (None without
        Redis)."""
        if not self.with_redis:
            return None
        found = self._remembered.get(digest)
        return found.principal if found is not None and time.monotonic() < found.until else None

    def remember(self, digest: str, principal: Principal) -> None:
        if not self.with_redis:
            return
        with self._lock:
            if len(self._remembered) >= self.MAX_REMEMBERED:
                self._remembered.clear()
            self._remembered[digest] = _Remembered(principal, time.monotonic() + self.fresh_s)

    def forget(self, digest: str) -> None:
        with self._lock:
            self._remembered.pop(digest, None)

    def admission(self, scope: str, digest: str, ip: str, verified: bool) -> Admission:
        return Admission(entry_key=keycache.entry_key(digest), revoked_key=keycache.revoked_key(digest),
                         fresh_ms=int(self.fresh_s * 1000), verified=verified,
                         failures_key=self._failures.key(ip), failures=self._failures.window,
                         requests_key=f"{self._key_prefix}:{scope}:k:{digest}", requests=self.windows[scope],
                         now_ms=int(time.time() * 1000))

    def limit_in_memory(self, scope: str, digest: str) -> Verdict:
        """API-140 when the log cannot admit: this process's own count."""
        return self._memory.check(f"{scope}:{digest}", self.windows[scope], int(time.time() * 1000))

