"""Per-key rate limits for the edge (api.md API-140, API-141; docs/api.md API-140-D1).

A limit of N requests per window is kept as the generic cell rate algorithm (GCRA): one number per limited key,
the *theoretical arrival time* (TAT) of the next request if requests came at exactly N per window. A request
passes when it would not push the TAT more than one window ahead of now; so N requests may come at once, and
after that one more each window/N. One key and one number make the check a few commands that fit *inside* the
edge's append script (core.queue): limiting, verifying the key and appending cost one round trip together
(issue 17 item 1). Its answers are exact: `Retry-After` is the time until one more request would pass, and
`X-RateLimit-Reset` the time the limit is whole again.

The same arithmetic runs in Python for the per-process memory fallback (Redis absent or down, API-140: never a
5xx because of a limit); ``tests/unit/core/test_ratewindow.py`` holds the Lua and the Python versions to one answer.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

from limits import parse


@dataclass(frozen=True, slots=True)
class Window:
    """``limit`` requests per ``window_ms``."""

    limit: int
    window_ms: int

    @classmethod
    def parse(cls, text: str) -> Window:
        """A Flask-Limiter string, as the settings give it: ``5000 per second``, ``20/2 minutes``."""
        item = parse(text)
        return cls(int(item.amount), int(item.get_expiry()) * 1000)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the limit says about one more request, and the figures of API-140's headers."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # Unix seconds when the limit is whole again
    retry_after: int  # whole seconds ≥ 1 until one more request would pass (meaningful when refused)

    def headers(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": str(self.reset_at)}


def gcra(limit: Window, stored: float | None, now_ms: int, hit: bool) -> tuple[Verdict, float | None]:
    """The verdict on one more request at ``now_ms`` and the TAT to store (None: nothing to store)."""
    interval = limit.window_ms / limit.limit
    tat = max(stored if stored is not None else now_ms, now_ms)
    after = tat + interval
    allowed = after - limit.window_ms <= now_ms
    if allowed and hit:
        tat = after
    remaining = max(0, math.floor((now_ms + limit.window_ms - tat) / interval))
    retry = max(1, math.ceil((after - limit.window_ms - now_ms) / 1000))
    verdict = Verdict(allowed, limit.limit, remaining, math.ceil(tat / 1000), retry)
    return verdict, round(tat, 3) if allowed and hit else None  # as Redis keeps it: core.ratewindow's Lua


class MemoryWindows:
    """The per-process fallback (API-140): the same arithmetic over a dict, for one process only."""

    MAX_KEYS = 100_000  # cleared when full: a fallback must never grow without bound

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, key: str, limit: Window, now_ms: int, hit: bool = True) -> Verdict:
        with self._lock:
            verdict, tat = gcra(limit, self._tats.get(key), now_ms, hit)
            if tat is not None:
                if len(self._tats) >= self.MAX_KEYS:
                    self._tats.clear()
                self._tats[key] = tat
            return verdict


# The Lua twin of ``gcra``, for scripts that define their own KEYS/ARGV around it.
# window_check(key, limit, window_ms, now_ms, hit) -> allowed (bool), limit, remaining, reset_at, retry_after
LUA_WINDOW = """
local function window_check(key, limit, window_ms, now_ms, hit)
  local interval = window_ms / limit
  local tat = math.max(tonumber(redis.call('GET', key)) or now_ms, now_ms)
  local after = tat + interval
  local allowed = after - window_ms <= now_ms
  if allowed and hit then
    tat = after
    redis.call('SET', key, string.format('%.3f', tat), 'PX', math.ceil(tat - now_ms) + 1)
  end
  local remaining = math.max(0, math.floor((now_ms + window_ms - tat) / interval))
  local retry = math.max(1, math.ceil((after - window_ms - now_ms) / 1000))
  return allowed, limit, remaining, math.ceil(tat / 1000), retry
end
"""

# KEYS[1] the key's TAT; ARGV limit, window_ms, now_ms, hit (1/0). Returns {allowed, limit, remaining, reset, retry}.
_CHECK = LUA_WINDOW + """
local allowed, limit, remaining, reset, retry = window_check(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]),
                                                             tonumber(ARGV[3]), ARGV[4] == '1')
return {allowed and 1 or 0, limit, remaining, reset, retry}
"""


def verdict_from_reply(reply: list[int]) -> Verdict:
    allowed, limit, remaining, reset_at, retry = (int(v) for v in reply)
    return Verdict(bool(allowed), limit, remaining, reset_at, retry)


class RedisWindows:
    """The shared limits: every process of a deployment counts against one."""

    def __init__(self, client: Any) -> None:
        self._script = client.register_script(_CHECK)

    def check(self, key: str, limit: Window, now_ms: int, hit: bool = True) -> Verdict:
        """Raises ``redis.RedisError`` when Redis cannot answer (the caller falls back to memory)."""
        reply = self._script(keys=[key], args=[limit.limit, limit.window_ms, now_ms, 1 if hit else 0])
        return verdict_from_reply(reply)
