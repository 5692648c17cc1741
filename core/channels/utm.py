"""UTM extraction, cleaning and canonicalization (sessions.md UTM-1..UTM-5, CH-3 medium classes).

Raw values are kept for display (`utm_raw`); only canonical values feed channels and source keys, so that
`Facebook`, `fb` and `facebook.com` are one source and `Paid-Social` and `paid_social` one medium.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Final
from urllib.parse import unquote_plus

from core.channels.scrub import hash_email_string
from core.channels.sources import MEDIUM_ALIASES, SOURCE_ALIASES

# UTM-1: the five that drive channels and source keys, then the four stored only.
KEY_PARAMS: Final[tuple[str, ...]] = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
STORED_ONLY_PARAMS: Final[tuple[str, ...]] = (
    "utm_id", "utm_source_platform", "utm_creative_format", "utm_marketing_tactic",
)
UTM_PARAMS: Final[tuple[str, ...]] = KEY_PARAMS + STORED_ONLY_PARAMS
_UTM_PARAM_SET: Final = frozenset(UTM_PARAMS)

MAX_UTM_LEN: Final = 255
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_WS_RE: Final = re.compile(r"\s+")
_MEDIUM_SEP_RE: Final = re.compile(r"[ \-.]+")


def query_of(url: str) -> str:
    """The query string of a (possibly relative) URL; the fragment never counts."""
    q = url.find("?")
    if q < 0:
        return ""
    query = url[q + 1 :]
    h = query.find("#")
    return query if h < 0 else query[:h]


def query_pairs(query: str) -> list[tuple[str, str]]:
    """Decoded (lower-cased name, value) pairs in order; `+` is a space as in forms (UTM-1)."""
    pairs: list[tuple[str, str]] = []
    if not query:
        return pairs
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((unquote_plus(name).strip().lower(), unquote_plus(value)))
    return pairs


def clean_value(value: str) -> str | None:
    """UTM-2 cleaning; None means absent.

    UTM-2 lists the 255 cut before email hashing; we hash the full value first so a long address is never
    stored half-raw (the hash is shorter than the cap anyway).
    """
    value = _CONTROL_RE.sub("", value)
    value = _WS_RE.sub(" ", value).strip()
    if not value:
        return None
    hashed = hash_email_string(value)
    if hashed != value:
        return hashed
    return value[:MAX_UTM_LEN].rstrip() or None


def utm_from_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """UTM-1: first non-empty occurrence of each captured name wins."""
    found: dict[str, str] = {}
    for name, value in pairs:
        if name in _UTM_PARAM_SET and name not in found:
            cleaned = clean_value(value)
            if cleaned is not None:
                found[name] = cleaned
    return found


def utm_from_explicit(explicit: Mapping[str, object] | None) -> dict[str, str]:
    """UTM-1 request-level fields; non-string values are ignored rather than coerced.

    The caller passes top-level fields before `properties` ones (UTM-1 order); the first non-empty wins.
    """
    found: dict[str, str] = {}
    if not explicit:
        return found
    for key, value in explicit.items():
        if not isinstance(key, str) or not isinstance(value, str):
            continue
        name = key.strip().lower()
        if name in _UTM_PARAM_SET and name not in found:
            cleaned = clean_value(value)
            if cleaned is not None:
                found[name] = cleaned
    return found


def merge_utm(from_url: Mapping[str, str], explicit: Mapping[str, object] | None) -> dict[str, str]:
    """UTM-1: explicit fields only when the URL carries none of the five; URL values still win per name."""
    merged: dict[str, str] = {}
    if not any(name in from_url for name in KEY_PARAMS):
        merged = utm_from_explicit(explicit)
    merged.update(from_url)
    return {name: merged[name] for name in UTM_PARAMS if name in merged}


@lru_cache(maxsize=4096)
def canonical_source(value: str | None) -> str | None:
    """UTM-3. No fuzzy matching: unknown values stay as they are."""
    if value is None:
        return None
    v = value.lower()
    if v.startswith("www."):
        v = v[4:]
    if v.endswith("/"):
        v = v[:-1]
    v = v.strip()
    if not v:
        return None
    return SOURCE_ALIASES.get(v, v)


def _medium_pattern_class(v: str) -> str | None:
    """UTM-4 fallback patterns, first match wins."""
    if (v.startswith("paid") and "social" in v) or ("social" in v and "ads" in v):
        return "paid_social"
    if "cpc" in v or "ppc" in v:
        return "paid_search"
    if v.startswith("paid") or v.startswith("cp"):
        return "paid"
    if "display" in v or "banner" in v:
        return "display"
    if "social" in v:
        return "social"
    if "mail" in v or "newsletter" in v:
        return "email"
    if "affiliate" in v:
        return "affiliate"
    if "video" in v:
        return "video"
    if v.endswith("push") or "sms" in v:
        return "other_known"
    return None


@lru_cache(maxsize=4096)
def medium_info(value: str | None) -> tuple[str | None, str | None]:
    """UTM-4: (canonical medium, CH-3 class); class None means unrecognized."""
    if value is None:
        return None, None
    v = _MEDIUM_SEP_RE.sub("_", value.lower()).strip()
    if not v:
        return None, None
    alias = MEDIUM_ALIASES.get(v)
    if alias is not None:
        return alias
    return v, _medium_pattern_class(v)


def canonical_medium(value: str | None) -> str | None:
    return medium_info(value)[0]


def medium_class(value: str | None) -> str | None:
    return medium_info(value)[1]


def canonical_utm(raw: Mapping[str, str]) -> dict[str, str | None]:
    """UTM-3..UTM-5 for the five key parameters."""
    campaign = raw.get("utm_campaign")
    return {
        "utm_source": canonical_source(raw.get("utm_source")),
        "utm_medium": canonical_medium(raw.get("utm_medium")),
        "utm_campaign": campaign.lower() if campaign is not None else None,
        "utm_content": raw.get("utm_content"),
        "utm_term": raw.get("utm_term"),
    }
