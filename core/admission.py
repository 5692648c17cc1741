"""Admission of a write request inside the append itself (issue 17 item 1; docs/api.md API-13-D3).

A single-event request used to pay six Redis round trips before its answer: the failed-authentication check
(API-141), the key cache (API-13), the rate limit and its figures (API-140), the idempotency reservation and the
append. Here the first three run as the prologue of the append script (core.queue), so admitting and appending
is one round trip, and a refused request writes nothing.

The prologue verifies the key against the shared cache (API-13: Redis, cleared synchronously by revocation):
the revocation mark refuses at once; otherwise the entry must exist, be fresh
(``CoreSettings.key_cache_ttl_s``) and name
the tenant the edge appends for. The tenant comes from the edge's memory of what this key resolved to — only a
*guess* of which keys to name; the verdict is always the shared entry's, read in the same atomic step as the
append. Any doubt answers ``unverified`` and the edge verifies the slow way (the database), as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.ratewindow import Verdict, Window, verdict_from_reply
from core.tenant import Tenant


@dataclass(frozen=True, slots=True)
class Admission:
    """What the append script checks before it writes anything."""

    entry_key: str  # the presented key's cache entry and revocation mark (core.keycache)
    revoked_key: str
    fresh_ms: int  # how long an entry is fresh (CoreSettings.key_cache_ttl_s)
    verified: bool  # checked against the database in this request: only the revocation mark can refuse
    failures_key: str  # API-141: the counter of the client's address (a keyed digest, never the address)
    failures: Window
    requests_key: str  # API-140: the counter of the presented key
    requests: Window
    now_ms: int

    def keys(self) -> list[str]:
        return [self.entry_key, self.revoked_key, self.failures_key,
                self.requests_key]

    def args(self, tenant: Tenant) -> list[Any]:
        return [tenant.account_id, tenant.environment, 1 if self.verified else 0, self.now_ms,
                self.fresh_ms, self.failures.limit, self.failures.window_ms, self.requests.limit,
                self.requests.window_ms]


class NotAdmitted(Exception):
    """The script refused before writing: ``blocked`` (API-141) or ``limited`` (API-140), with the refusing
    limit's ``verdict``, or ``unverified`` (the key must be looked up in the database)."""

    def __init__(self, reason: str, retry_after: int = 1, verdict: Verdict | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.verdict = verdict


class AdmissionUnavailable(Exception):
    """The log cannot admit now (no Redis, or Redis unreachable): nothing was recorded; admit another way."""


# Defines admit(a, b): KEYS[a..a+3] as Admission.keys(), ARGV[b..b+8] as Admission.args(). Needs LUA_WINDOW.
# Returns {'ok', verdict...} or a refusal: {'blocked', verdict...} (API-141), {'limited', verdict...}, {'unverified'}.
LUA_ADMIT = """
local function admit(a, b)
  local now = tonumber(ARGV[b + 3])
  local free, fl, fremaining, freset, fwait = window_check(KEYS[a + 2], tonumber(ARGV[b + 5]),
                                                          tonumber(ARGV[b + 6]), now, false)
  if not free then return {'blocked', fl, fremaining, freset, fwait} end
  if redis.call('EXISTS', KEYS[a + 1]) == 1 then return {'unverified'} end
  if ARGV[b + 2] ~= '1' then
    local raw = redis.call('GET', KEYS[a])
    if not raw then return {'unverified'} end
    local entry = cjson.decode(raw)
    if entry.account_id ~= ARGV[b] or entry.environment ~= ARGV[b + 1]
       or type(entry.checked_at) ~= 'number' or now - entry.checked_at * 1000 >= tonumber(ARGV[b + 4]) then
      return {'unverified'}
    end
  end
  local allowed, l, remaining, reset, retry = window_check(KEYS[a + 3], tonumber(ARGV[b + 7]),
                                                          tonumber(ARGV[b + 8]), now, true)
  return {allowed and 'ok' or 'limited', l, remaining, reset, retry}
end
"""


def outcome(reply: list[Any]) -> Verdict:
    """The prologue's answer: the per-key limit's verdict; raises ``NotAdmitted`` on a refusal."""
    status = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
    if status == "unverified":
        raise NotAdmitted("unverified")
    verdict = verdict_from_reply([1 if status == "ok" else 0, *reply[1:]])
    if status in ("blocked", "limited"):
        raise NotAdmitted(status, retry_after=verdict.retry_after, verdict=verdict)
    return verdict
