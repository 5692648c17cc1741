"""Bots and device type: sessions.md BOT-1, FP-5."""

from __future__ import annotations

import logging

import pytest

from core.channels import device_type, is_bot
from core.channels.bots import DEVICE_TYPES, SUPPLEMENTARY_BOT_PATTERNS, compile_patterns

CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
SAFARI_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.0 Safari/605.1.15"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
CHROMEOS = (
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.0 Mobile/15E148 Safari/604.1"
)
ANDROID_PHONE = (
    "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Mobile Safari/537.36"
)
ANDROID_REDUCED_PHONE = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Mobile Safari/537.36"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 13_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/13.0 Mobile/15E148 Safari/604.1"
)
GALAXY_TAB = (
    "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Safari/537.36"
)
KINDLE = (
    "Mozilla/5.0 (Linux; Android 11; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/110.1.5 "
    "like Chrome/110.0.5481.154 Safari/537.36"
)
WINDOWS_PHONE = (
    "Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 (KHTML, "
    "like Gecko) Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.14977"
)
IE_TABLET_PC = "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0; Tablet PC 2.0)"
SMART_TV = (
    "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 "
    "Chrome/76.0.3809.146 TV Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BINGBOT = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 "
    "Safari/537.36"
)

# One realistic-ish user agent per BOT-1 supplementary entry.
SUPPLEMENTARY_EXAMPLES = {
    "HeadlessChrome": HEADLESS,
    "PhantomJS": "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1",
    "Chrome-Lighthouse": CHROME_WIN + " Chrome-Lighthouse",
    "PTST/": CHROME_WIN + " PTST/240101.1",
    "Prerender": CHROME_WIN + " Prerender (+https://github.com/prerender/prerender)",
    "Google-InspectionTool": "Mozilla/5.0 (compatible; Google-InspectionTool/1.0;)",
    "GoogleOther": "Mozilla/5.0 (compatible; GoogleOther)",
    "Storebot-Google": "Mozilla/5.0 (X11; Linux x86_64; Storebot-Google/1.0) Chrome/79.0 Safari/537.36",
    "puppeteer": CHROME_WIN + " Puppeteer",
    "playwright": CHROME_WIN + " Playwright/1.40",
    "selenium": CHROME_WIN + " Selenium",
    "Cypress": CHROME_WIN + " Cypress/13.6.0",
    "python-requests": "python-requests/2.31.0",
    "python-httpx": "python-httpx/0.26.0",
    "aiohttp": "Python/3.11 aiohttp/3.9.1",
    "axios/": "axios/1.6.2",
    "node-fetch": "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "undici": "undici",
    "Go-http-client": "Go-http-client/1.1",
    "curl/": "curl/8.4.0",
    "Wget/": "Wget/1.21.4",
    "okhttp": "okhttp/4.12.0",
    "Java/": "Java/17.0.2",
    "libwww-perl": "libwww-perl/6.72",
}


def test_BOT1_examples_cover_the_whole_list() -> None:
    assert set(SUPPLEMENTARY_EXAMPLES) == set(SUPPLEMENTARY_BOT_PATTERNS)
    assert len(SUPPLEMENTARY_BOT_PATTERNS) == 24


@pytest.mark.parametrize("pattern", SUPPLEMENTARY_BOT_PATTERNS)
def test_BOT1_supplementary_list(pattern: str) -> None:
    ua = SUPPLEMENTARY_EXAMPLES[pattern]
    assert is_bot(ua)
    assert is_bot(ua.upper())
    assert is_bot(ua.lower())
    assert device_type(ua) == "bot"


@pytest.mark.parametrize("pattern", SUPPLEMENTARY_BOT_PATTERNS)
def test_BOT1_each_pattern_matches_on_its_own(pattern: str) -> None:
    (compiled,) = compile_patterns([pattern])
    assert compiled.search("xx " + pattern.swapcase() + " yy")


@pytest.mark.parametrize(
    "ua",
    [
        GOOGLEBOT, BINGBOT, "facebookexternalhit/1.1", "Mozilla/5.0 (compatible; AhrefsBot/7.0)",
        "Slackbot 1.0",
    ],
)
def test_BOT1_crawlerdetect(ua: str) -> None:
    assert is_bot(ua)


@pytest.mark.parametrize(
    "ua", [CHROME_WIN, SAFARI_MAC, FIREFOX_LINUX, IPHONE, ANDROID_PHONE, IPAD, GALAXY_TAB, KINDLE]
)
def test_BOT1_browsers_are_not_bots(ua: str) -> None:
    assert not is_bot(ua)


@pytest.mark.parametrize("ua", [None, "", "   ", "unknown", "Unknown", " UNKNOWN "])
def test_BOT1_no_user_agent_is_not_a_bot(ua: str | None) -> None:
    assert not is_bot(ua)
    assert device_type(ua) == "unknown"


def test_BOT1_bad_pattern_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="core.channels.bots"):
        compiled = compile_patterns(["good", "(unclosed", "also[good]"])
    assert [p.pattern for p in compiled] == ["good", "also[good]"]
    assert "(unclosed" in caplog.text


@pytest.mark.parametrize(
    ("ua", "kind"),
    [
        (CHROME_WIN, "desktop"),
        (SAFARI_MAC, "desktop"),
        (FIREFOX_LINUX, "desktop"),
        (CHROMEOS, "desktop"),
        (IE_TABLET_PC, "desktop"),
        (SMART_TV, "desktop"),
        (IPHONE, "mobile"),
        (ANDROID_PHONE, "mobile"),
        (ANDROID_REDUCED_PHONE, "mobile"),
        (WINDOWS_PHONE, "mobile"),
        (IPAD, "tablet"),
        (GALAXY_TAB, "tablet"),
        (KINDLE, "tablet"),
        (GOOGLEBOT, "bot"),
        (HEADLESS, "bot"),
        ("curl/8.4.0", "bot"),
        ("something odd", "desktop"),
        (None, "unknown"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_FP5_device_type(ua: str | None, kind: str) -> None:
    assert device_type(ua) == kind
    assert kind in DEVICE_TYPES


def test_FP5_bot_iff_BOT1() -> None:
    for ua in [CHROME_WIN, IPHONE, GOOGLEBOT, HEADLESS, "okhttp/4", "Mozilla/5.0"]:
        assert (device_type(ua) == "bot") is is_bot(ua)
