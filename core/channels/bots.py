"""Bot detection and device type (sessions.md BOT-1, FP-5).

Both run for every item that carries a user agent, and user agents repeat heavily, so results are cached per
string.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Final

import ua_parser
from crawlerdetect import CrawlerDetect

log = logging.getLogger(__name__)

# BOT-1 supplementary list: headless browsers, test runners and HTTP client libraries.
SUPPLEMENTARY_BOT_PATTERNS: Final[tuple[str, ...]] = (
    "HeadlessChrome", "PhantomJS", "Chrome-Lighthouse", "PTST/", "Prerender", "Google-InspectionTool",
    "GoogleOther", "Storebot-Google", "puppeteer", "playwright", "selenium", "Cypress", "python-requests",
    "python-httpx", "aiohttp", "axios/", "node-fetch", "undici", "Go-http-client", "curl/", "Wget/", "okhttp",
    "Java/", "libwww-perl",
)

DEVICE_TYPES: Final[tuple[str, ...]] = ("mobile", "tablet", "desktop", "bot", "unknown")


def compile_patterns(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    """BOT-1: each pattern on its own, so one bad entry is logged and skipped, never disabling detection."""
    compiled: list[re.Pattern[str]] = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            log.warning("bot pattern %r does not compile (%s); skipped", pattern, exc)
    return tuple(compiled)


_SUPPLEMENTARY: Final = compile_patterns(SUPPLEMENTARY_BOT_PATTERNS)
_DETECTOR: Final = CrawlerDetect()


def _is_no_user_agent(ua: str) -> bool:
    return not ua or ua.lower() == "unknown"


@lru_cache(maxsize=4096)
def _is_bot(ua: str) -> bool:
    if any(p.search(ua) for p in _SUPPLEMENTARY):
        return True
    try:
        return bool(_DETECTOR.is_crawler(ua))
    except Exception:  # a library failure must not take classification down (BOT-1)
        log.exception("crawlerdetect failed; falling back to the supplementary list")
        return False


def is_bot(user_agent: str | None) -> bool:
    """BOT-1. No user agent (or the literal `unknown`) is not a bot: SDKs often omit it on server calls."""
    if not isinstance(user_agent, str):
        return False
    ua = user_agent.strip()
    if _is_no_user_agent(ua):
        return False
    return _is_bot(ua)


_TABLET_HINTS: Final = (
    "ipad", "tablet", "kindle", "silk/", "playbook", "nexus 7", "nexus 9", "nexus 10", "xoom",
)
_MOBILE_OS: Final = frozenset({
    "iOS", "Android", "Windows Phone", "Windows Mobile", "BlackBerry OS", "BlackBerry Tablet OS",
    "Symbian OS", "KaiOS", "Firefox OS", "webOS", "Bada", "Maemo", "MeeGo", "Sailfish",
})
_TV_HINTS: Final = (
    "smart-tv", "smarttv", "googletv", "android tv", "bravia", "hbbtv", "appletv", "crkey", " tv ",
)


@lru_cache(maxsize=4096)
def _device_type(ua: str) -> str:
    if _is_bot(ua):
        return "bot"
    lowered = ua.lower()
    try:
        parsed = ua_parser.parse(ua)
    except Exception:  # FP-5 must give an answer for any text
        log.exception("ua-parser failed")
        return "desktop"
    device = parsed.device
    device_text = " ".join((device.family, device.brand or "", device.model or "")).lower() if device else ""
    os_family = parsed.os.family if parsed.os else ""

    # "Tablet PC" is a Windows desktop feature token, not a tablet.
    if "tablet pc" not in lowered and (
        any(h in lowered for h in _TABLET_HINTS) or "tablet" in device_text or "kindle" in device_text
    ):
        return "tablet"
    if any(h in lowered for h in _TV_HINTS):
        return "desktop"  # FP-5 has no TV class; a TV browses like a desktop, not a handset.
    if os_family == "Android" and "mobile" not in lowered and "phone" not in device_text:
        return "tablet"  # Android tablets drop the `Mobile` token (Google's UA guidance).
    if os_family in _MOBILE_OS or "mobi" in lowered or "iphone" in lowered or "opera mini" in lowered:
        return "mobile"
    return "desktop"


def device_type(user_agent: str | None) -> str:
    """FP-5: `bot` exactly when BOT-1 matches, so device type and the session's bot class never disagree.

    FP-5 reserves `unknown` for "no user agent"; any other text gets one of the three device classes.
    """
    if not isinstance(user_agent, str):
        return "unknown"
    ua = user_agent.strip()
    if _is_no_user_agent(ua):
        return "unknown"
    return _device_type(ua)
