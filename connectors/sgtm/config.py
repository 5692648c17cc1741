"""The sGTM connector's process settings (sgtm.md SGTM-20: the per-key rate limit), owned here (issue 18 item 2)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.config import env_text

__all__ = ["SgtmSettings"]


@dataclass(frozen=True)
class SgtmSettings:
    ratelimit_sgtm: str = "6000 per minute"  # MBUZZ_RATE_SGTM

    @classmethod
    def env_values(cls, env: Mapping[str, str]) -> dict[str, Any]:
        return {"ratelimit_sgtm": env_text(env, "MBUZZ_RATE_SGTM", cls.ratelimit_sgtm)}
