"""The edge's rate limits (api.md API-140, API-141; core.ratewindow): the arithmetic, and its Lua twin.

The memory fallback and the Redis script must give one answer, or a Redis outage would change what a client is
allowed; the parity test runs both over the same arrivals against real Redis.
"""

from __future__ import annotations

import uuid

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.queue import PREFIX
from core.ratewindow import MemoryWindows, RedisWindows, Window

T0 = 1_800_000_000_000  # ms


def test_API140_a_full_window_passes_at_once_then_one_more_each_window_over_n() -> None:
    limits, three = MemoryWindows(), Window(3, 60_000)
    verdicts = [limits.check("k", three, T0) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    assert verdicts[3].retry_after == 20  # a third of the minute, the earliest time one more passes
    assert not limits.check("k", three, T0 + 19_999).allowed
    assert limits.check("k", three, T0 + 20_000).allowed
    assert limits.check("other", three, T0).allowed  # each key counts alone


def test_API140_headers_say_when_the_limit_is_whole_again() -> None:
    verdict = MemoryWindows().check("k", Window(10, 1_000), T0)
    assert verdict.headers() == {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "9",
                                 "X-RateLimit-Reset": str(-(-(T0 + 100) // 1000))}


def test_API141_a_check_without_a_hit_counts_nothing() -> None:
    limits, one = MemoryWindows(), Window(1, 60_000)
    assert all(limits.check("ip", one, T0, hit=False).allowed for _ in range(5))
    limits.check("ip", one, T0)
    refused = limits.check("ip", one, T0 + 1_000, hit=False)
    assert not refused.allowed and refused.retry_after == 59


def test_window_parses_the_settings_strings() -> None:
    assert Window.parse("5000 per second") == Window(5000, 1_000)
    assert Window.parse("20/2 minutes") == Window(20, 120_000)


@pytest.mark.redis
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.integers(1, 7), window_s=st.integers(1, 90),
       arrivals=st.lists(st.tuples(st.integers(0, 40_000), st.booleans()), min_size=1, max_size=30))
def test_API140_the_lua_and_the_memory_windows_agree(limits_store: redis.Redis, limit: int, window_s: int,
                                                      arrivals: list[tuple[int, bool]]) -> None:
    window, memory, shared = Window(limit, window_s * 1000), MemoryWindows(), RedisWindows(limits_store)
    key, now = f"{PREFIX}:limits:test-window:{uuid.uuid4().hex}", T0
    try:
        for gap, hit in arrivals:
            now += gap
            assert shared.check(key, window, now, hit) == memory.check(key, window, now, hit)
    finally:
        limits_store.delete(key)
