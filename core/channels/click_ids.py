"""Click identifiers (sessions.md CLK-1, CLK-2).

Tier 1 ids are unambiguous ad clicks and decide the channel before UTMs; tier 2 ids only after UTMs, since
they also appear on organic shares or name a network rather than a medium.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from core.channels.scrub import hash_email_string
from core.channels.sources import CLICK_IDS, GOOGLE_ADS_CLICK_IDS

MAX_CLICK_ID_LEN: Final = 512
CLICK_ID_NAMES: Final[tuple[str, ...]] = tuple(name for name, _, _ in CLICK_IDS)
_ORDER: Final = {name: index for index, name in enumerate(CLICK_ID_NAMES)}
_TIER: Final = {name: tier for name, tier, _ in CLICK_IDS}
_CHANNEL: Final = {name: channel for name, _, channel in CLICK_IDS}
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def click_ids_from_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """CLK-1: first non-empty value per name, cut to 512; table order, so dicts compare and print stably."""
    found: dict[str, str] = {}
    for name, value in pairs:
        if name in _ORDER and name not in found:
            cleaned = _CONTROL_RE.sub("", value).strip()
            if cleaned:
                # ID-11 covers every URL query value, click ids included.
                found[name] = hash_email_string(cleaned)[:MAX_CLICK_ID_LEN]
    return {name: found[name] for name in sorted(found, key=_ORDER.__getitem__)}


def first_of_tier(click_ids: Mapping[str, str], tier: int) -> str | None:
    """CLK-1: when several are present, the first in table order wins."""
    for name in CLICK_ID_NAMES:
        if name in click_ids and _TIER[name] == tier:
            return name
    return None


def click_id_channel(name: str, medium_class: str | None, utm_source: str | None) -> str:
    """CLK-1 channel of one id, with the CLK-2 refinement for Google Ads ids."""
    if name in GOOGLE_ADS_CLICK_IDS:
        if medium_class == "display":
            return "display"
        if medium_class == "video" or utm_source == "youtube":
            return "video"
        return "paid_search"
    return _CHANNEL[name]


def click_ids_key(click_ids: Mapping[str, str]) -> str:
    """SES-5: `name=value` pairs sorted by name and joined with `&`."""
    return "&".join(f"{name}={click_ids[name]}" for name in sorted(click_ids))
