"""Channel classification of one item (sessions.md CH-1..CH-5, SES-4, SES-5, BOT-2, BOT-4).

`traffic_for` is the single classification function behind touches, events, the `POST /sessions` answer and
the tests (CH-5). It is pure, deterministic and total (Q-62): any input gives a Traffic, never an exception.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from core.channels.click_ids import click_id_channel, click_ids_from_pairs, click_ids_key, first_of_tier
from core.channels.referrers import (
    EMPTY_SITE_INDEX,
    Referrer,
    SiteIndex,
    host_category,
    is_internal,
    is_spam,
    normalize_host,
    parse_referrer,
    referrer_category,
    referrer_domain,
    site_index,
    url_host,
)
from core.channels.scrub import scrub_url
from core.channels.sources import CLICK_IDS, TOKEN_CATEGORY
from core.channels.utm import (
    KEY_PARAMS,
    canonical_utm,
    medium_info,
    merge_utm,
    query_of,
    query_pairs,
    utm_from_pairs,
)

log = logging.getLogger(__name__)

CHANNELS: Final[tuple[str, ...]] = (
    "paid_search", "organic_search", "paid_social", "organic_social", "email", "display", "affiliate",
    "referral", "video", "ai", "direct", "other",
)
EXCLUSION_REASONS: Final[tuple[str, ...]] = ("ip_referrer", "spam_referrer", "test_ping")
MAX_LANDING_URL_LEN: Final = 2048
# BOT-4: Google's sGTM measurement pings. Matched on the host so `http://` and a bare host count too.
TEST_PING_HOST: Final = "gtm-msr.appspot.com"

# CH-2 rule 7 and CH-4: category -> channel. `direct` and `referral` only come from account entries (REF-4).
CATEGORY_CHANNEL: Final[Mapping[str, str]] = {
    "ai": "ai",
    "search": "organic_search",
    "social": "organic_social",
    "video": "video",
    "email": "email",
    "shopping": "referral",
    "direct": "direct",
    "referral": "referral",
}
_TIER2_CHANNEL: Final = {name: channel for name, tier, channel in CLICK_IDS if tier == 2}


@dataclass(frozen=True)
class SiteConfig:
    """Per-account settings (REF-2, REF-4, BOT-2); the caller merges the operator's spam file in."""

    site_domains: tuple[str, ...] = ()
    referral_exclusions: tuple[str, ...] = ()
    channel_sources: Mapping[str, str] = field(default_factory=dict)
    spam_referrers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Traffic:
    """Everything a session takes from the item that creates it (SES-8), plus the channel and source key."""

    channel: str
    has_signals: bool
    source_key: str | None
    utm: dict[str, str | None]
    utm_raw: dict[str, str]
    click_ids: dict[str, str]
    referrer_url: str | None
    referrer_host: str | None
    referrer_internal: bool
    landing_url: str | None
    landing_host: str | None
    exclusion_reason: str | None


@dataclass(frozen=True, slots=True)
class _Landing:
    url: str | None
    host: str | None
    utm: tuple[tuple[str, str], ...]
    click_ids: tuple[tuple[str, str], ...]


@lru_cache(maxsize=4096)
def _landing(url: str) -> _Landing:
    """UTM-1/CLK-1/ID-12 for one URL string; landing URLs repeat, so this is cached."""
    pairs = query_pairs(query_of(url))
    return _Landing(
        url=scrub_url(url, MAX_LANDING_URL_LEN),
        host=url_host(url),
        utm=tuple(utm_from_pairs(pairs).items()),
        click_ids=tuple(click_ids_from_pairs(pairs).items()),
    )


_NO_LANDING: Final = _Landing(url=None, host=None, utm=(), click_ids=())


def _site_index_of(site: SiteConfig | None) -> SiteIndex:
    if site is None:
        return EMPTY_SITE_INDEX
    return site_index(site.site_domains, site.referral_exclusions, site.spam_referrers, site.channel_sources)


def source_category(source: str | None, site: SiteIndex = EMPTY_SITE_INDEX) -> str | None:
    """CH-4: account entries first, then tokens; a dotted value is looked up as a host (REF-4)."""
    if not source:
        return None
    if site.sources:
        found = site.sources.get(source)
        if found is not None:
            return found
    if "." in source:
        text = source.split("://", 1)[1] if "://" in source else source
        host = normalize_host(text.split("/", 1)[0])
        return host_category(host, site) if host else None
    return TOKEN_CATEGORY.get(source)


def _medium_channel(cls: str, category: str | None) -> str:
    """CH-3 class rules; `category` is the traffic source's category."""
    if cls == "paid_search":
        if category == "social":
            return "paid_social"
        return "video" if category == "video" else "paid_search"
    if cls == "paid":
        if category in ("search", "shopping"):
            return "paid_search"
        if category == "social":
            return "paid_social"
        return "video" if category == "video" else "other"
    if cls == "organic":
        if category == "social":
            return "organic_social"
        return "video" if category == "video" else "organic_search"
    return {
        "paid_social": "paid_social",
        "display": "display",
        "video": "video",
        "social": "organic_social",
        "email": "email",
        "affiliate": "affiliate",
        "referral": "referral",
        "ai": "ai",
        "other_known": "other",
        "none": "direct",
    }.get(cls, "other")


def decide_channel(
    utm: Mapping[str, str | None],
    click_ids: Mapping[str, str],
    external: Referrer | None,
    internal: bool,
    site: SiteIndex = EMPTY_SITE_INDEX,
) -> str:
    """CH-2 decision order; the first rule that fires wins."""
    if internal:
        return "direct"  # rule 1
    source = utm.get("utm_source")
    medium_cls = medium_info(utm.get("utm_medium"))[1] if utm.get("utm_medium") else None
    tier1 = first_of_tier(click_ids, 1)
    if tier1 is not None:
        return click_id_channel(tier1, medium_cls, source)  # rule 2 (CLK-2)
    source_cat = source_category(source, site)
    if medium_cls is not None:
        # CH-3 ambiguity: with no utm_source, the external referrer is the "source" for the class rule
        # (`?utm_medium=paid` from l.facebook.com is paid social, not other).
        category = source_cat
        if source is None and external is not None:
            category = referrer_category(external, site)
        return _medium_channel(medium_cls, category)  # rule 3
    if source_cat is not None:
        return CATEGORY_CHANNEL.get(source_cat, "other")  # rule 4
    tier2 = first_of_tier(click_ids, 2)
    if tier2 is not None:
        return _TIER2_CHANNEL[tier2]  # rule 5
    if external is not None:
        return CATEGORY_CHANNEL.get(referrer_category(external, site) or "", "referral")  # rules 6-7
    if source is not None or utm.get("utm_medium") is not None:
        return "other"  # rule 6: tagged traffic we cannot place is never direct
    return "direct"  # rule 8


def source_key(
    channel: str, utm: Mapping[str, str | None], click_ids: Mapping[str, str], external: Referrer | None
) -> str:
    """SES-5."""
    parts = [channel]
    parts.extend(utm.get(name) or "" for name in KEY_PARAMS)
    parts.append(click_ids_key(click_ids))
    parts.append(referrer_domain(external) if external is not None else "")
    return "|".join(parts)


def _traffic(
    url: str | None, referrer: str | None, explicit_utm: Mapping[str, object] | None, site: SiteConfig | None
) -> Traffic:
    index = _site_index_of(site)
    landing = _landing(url) if isinstance(url, str) and url.strip() else _NO_LANDING
    utm_raw = merge_utm(dict(landing.utm), explicit_utm)
    utm = canonical_utm(utm_raw)
    click_ids = dict(landing.click_ids)

    ref = parse_referrer(referrer)
    # REF-2 rule 2 also covers items without a URL, through site_domains.
    internal = ref is not None and is_internal(ref, landing.host, index)
    external = ref if ref is not None and not internal else None

    reason: str | None = None
    if landing.host == TEST_PING_HOST:
        reason = "test_ping"
    elif external is not None and external.is_ip:
        reason = "ip_referrer"
    elif external is not None and is_spam(external, index):
        reason = "spam_referrer"
    # BOT-2 ambiguity: an internal referrer is never spam, so a site served from an IP is not self-excluded.

    channel = decide_channel(utm, click_ids, external, internal, index)
    has_signals = not internal and (
        any(utm[name] is not None for name in KEY_PARAMS) or bool(click_ids) or external is not None
    )
    return Traffic(
        channel=channel,
        has_signals=has_signals,
        source_key=source_key(channel, utm, click_ids, external) if has_signals else None,
        utm=utm,
        utm_raw=utm_raw,
        click_ids=click_ids,
        referrer_url=ref.url if ref is not None else None,
        referrer_host=ref.host if ref is not None else None,
        referrer_internal=internal,
        landing_url=landing.url,
        landing_host=landing.host,
        exclusion_reason=reason,
    )


def _fallback(url: object, referrer: object, explicit_utm: object) -> Traffic:
    """The safe answer when classification itself failed: input we could not read is `other`, not direct."""
    anything = any(isinstance(x, str) and x.strip() for x in (url, referrer)) or bool(
        isinstance(explicit_utm, Mapping) and explicit_utm
    )
    return Traffic(
        channel="other" if anything else "direct",
        has_signals=False,
        source_key=None,
        utm=dict.fromkeys(KEY_PARAMS),
        utm_raw={},
        click_ids={},
        referrer_url=None,
        referrer_host=None,
        referrer_internal=False,
        landing_url=None,
        landing_host=None,
        exclusion_reason=None,
    )


def traffic_for(
    url: str | None,
    referrer: str | None,
    explicit_utm: Mapping[str, object] | None = None,
    site: SiteConfig | None = None,
) -> Traffic:
    """CH-5: total and deterministic; never raises."""
    try:
        if not isinstance(url, str):
            url = None
        if not isinstance(explicit_utm, Mapping):
            explicit_utm = None
        if not isinstance(site, SiteConfig):
            site = None
        return _traffic(url, referrer, explicit_utm, site)
    except Exception:
        log.exception("channel classification failed; falling back")
        return _fallback(url, referrer, explicit_utm)
