"""Data tables for channel classification (sessions.md §6-§10).

Our own lists, written out from the spec under the project licence; no third-party list is vendored (REF-5).
Everything is frozen at import so lookups per event are plain dict/set probes.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

# ---------------------------------------------------------------------------------------------------------
# REF-5 host categories. Plain entries match the host and every subdomain; ``name.*`` entries are families
# (REF-4) and live in FAMILY_CATEGORY; the "first label webmail" rule is WEBMAIL_LABEL.
# ---------------------------------------------------------------------------------------------------------

CATEGORIES: Final[tuple[str, ...]] = ("search", "social", "video", "shopping", "email", "ai")

_HOSTS: Final[dict[str, tuple[str, ...]]] = {
    "search": (
        "google.*", "news.google.com", "lens.google.com", "search.google.com", "bing.com", "duckduckgo.com",
        "search.yahoo.com", "yahoo.co.jp", "baidu.com", "yandex.*", "ya.ru", "naver.com", "daum.net",
        "seznam.cz", "ecosia.org", "qwant.com", "startpage.com", "search.brave.com", "kagi.com", "sogou.com",
        "so.com", "search.aol.com", "ask.com", "dogpile.com", "mojeek.com", "yep.com", "coccoc.com",
        "presearch.com", "ntp.msn.com",
    ),
    "social": (
        "facebook.com", "fb.com", "fb.me", "m.me", "messenger.com", "instagram.com", "threads.net",
        "threads.com", "x.com", "twitter.com", "t.co", "linkedin.com", "lnkd.in", "pinterest.*",
        "pinterest.com", "pin.it", "reddit.com", "redd.it", "quora.com", "tiktok.com", "snapchat.com",
        "tumblr.com", "medium.com", "discord.com", "discord.gg", "whatsapp.com", "wa.me", "t.me",
        "telegram.org", "line.me", "kakao.com", "vk.com", "ok.ru", "weibo.com", "douban.com", "xing.com",
        "bsky.app", "mastodon.social", "news.ycombinator.com", "producthunt.com", "stackoverflow.com",
        "stackexchange.com", "yelp.com", "tripadvisor.com", "trustpilot.com", "goodreads.com",
        "flipboard.com", "nextdoor.com", "meetup.com",
    ),
    "video": (
        "youtube.com", "youtu.be", "youtube-nocookie.com", "vimeo.com", "twitch.tv", "dailymotion.com",
        "dai.ly", "wistia.com", "wistia.net", "rumble.com", "bilibili.com", "youku.com", "iqiyi.com",
        "nicovideo.jp", "ted.com", "netflix.com", "hulu.com", "disneyplus.com",
    ),
    "shopping": (
        "amazon.*", "ebay.*", "etsy.com", "walmart.com", "target.com", "bestbuy.com", "aliexpress.com",
        "alibaba.com", "temu.com", "shein.com", "shop.app", "idealo.*", "pricerunner.*", "kelkoo.*",
        "shopzilla.com", "mercadolibre.*", "zalando.*", "bol.com", "allegro.pl", "otto.de", "flipkart.com",
        "wayfair.com", "newegg.com", "shopping.google.com", "shopping.yahoo.com", "shopping.naver.com",
    ),
    "email": (
        "mail.google.com", "inbox.google.com", "outlook.live.com", "outlook.office.com",
        "outlook.office365.com", "mail.yahoo.com", "mail.yahoo.co.jp", "mail.aol.com", "mail.proton.me",
        "mail.protonmail.com", "app.fastmail.com", "mail.zoho.com", "mail.zoho.eu", "mail.yandex.ru",
        "mail.yandex.com", "e.mail.ru", "gmx.*", "web.de", "email.t-online.de", "mail.com", "icloud.com",
        "email.seznam.cz",
    ),
    "ai": (
        "chatgpt.com", "chat.openai.com", "perplexity.ai", "claude.ai", "gemini.google.com",
        "bard.google.com", "notebooklm.google.com", "copilot.microsoft.com", "copilot.cloud.microsoft",
        "edgeservices.bing.com", "meta.ai", "grok.com", "grok.x.ai", "chat.deepseek.com", "chat.mistral.ai",
        "poe.com", "you.com", "phind.com", "duck.ai", "character.ai", "pi.ai",
    ),
}


def _split_hosts() -> tuple[dict[str, str], dict[str, str]]:
    exact: dict[str, str] = {}
    family: dict[str, str] = {}
    for category, entries in _HOSTS.items():
        for entry in entries:
            if entry.endswith(".*"):
                family.setdefault(entry[:-2], category)
            else:
                exact.setdefault(entry, category)
    return exact, family


_exact, _family = _split_hosts()
HOST_CATEGORY: Final = MappingProxyType(_exact)
FAMILY_CATEGORY: Final = MappingProxyType(_family)
# REF-5 email row: "first label webmail".
WEBMAIL_LABEL: Final = "webmail"

# REF-5 source tokens (canonical utm_source values, CH-4).
_TOKENS: Final[dict[str, tuple[str, ...]]] = {
    "search": (
        "google", "bing", "yahoo", "duckduckgo", "baidu", "yandex", "naver", "daum", "ecosia", "qwant",
        "brave", "startpage", "seznam", "sogou", "aol", "ask", "mojeek", "kagi", "yep", "coccoc",
    ),
    "social": (
        "facebook", "instagram", "threads", "twitter", "linkedin", "tiktok", "pinterest", "reddit",
        "snapchat", "whatsapp", "telegram", "messenger", "discord", "quora", "tumblr", "medium", "bluesky",
        "bsky", "mastodon", "line", "kakao", "vk", "weibo", "wechat", "xing", "nextdoor", "hackernews",
        "producthunt", "yelp", "tripadvisor", "trustpilot",
    ),
    "video": ("youtube", "vimeo", "twitch", "dailymotion", "wistia", "rumble", "bilibili"),
    "shopping": (
        "amazon", "ebay", "etsy", "walmart", "target", "aliexpress", "temu", "shein", "shop_app",
        "google_shopping", "igshopping", "shopping", "idealo", "pricerunner", "mercadolibre",
    ),
    "email": (
        "email", "newsletter", "mailchimp", "klaviyo", "sendgrid", "hubspot", "braze", "iterable",
        "customerio", "mailerlite", "convertkit", "activecampaign", "brevo", "sendinblue", "omnisend", "drip",
        "campaignmonitor", "constantcontact", "substack", "beehiiv", "gmail", "outlook",
    ),
    "ai": (
        "chatgpt", "openai", "perplexity", "claude", "gemini", "copilot", "meta_ai", "grok", "deepseek",
        "mistral", "poe", "phind",
    ),
    "direct": ("direct", "(direct)"),
}
TOKEN_CATEGORY: Final = MappingProxyType(
    {token: category for category, tokens in _TOKENS.items() for token in tokens}
)

# ---------------------------------------------------------------------------------------------------------
# UTM-3 source aliases: alias -> canonical.
# ---------------------------------------------------------------------------------------------------------

_SOURCE_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "google": (
        "goog", "google.com", "googleads", "google_ads", "google-ads", "google ads", "adwords", "gads",
    ),
    "bing": (
        "bing.com", "bingads", "bing_ads", "microsoft", "microsoft_ads", "microsoftads", "msn", "msn.com",
    ),
    "yahoo": ("yahoo.com", "search.yahoo.com"),
    "duckduckgo": ("ddg", "duckduckgo.com"),
    "facebook": (
        "fb", "fb.com", "facebook.com", "m.facebook.com", "l.facebook.com", "lm.facebook.com", "meta",
        "meta_ads", "facebook_ads", "fbads",
    ),
    "instagram": ("ig", "insta", "instagram.com", "l.instagram.com"),
    "twitter": ("tw", "x", "x.com", "twitter.com", "t.co"),
    "linkedin": ("li", "lnkd", "lnkd.in", "linkedin.com"),
    "youtube": ("yt", "youtube.com", "youtu.be", "m.youtube.com"),
    "tiktok": ("tt", "tiktok.com", "tiktok_ads"),
    "pinterest": ("pin", "pinterest.com", "pin.it"),
    "reddit": ("reddit.com", "old.reddit.com", "redd.it"),
    "snapchat": ("snap", "snapchat.com"),
    "whatsapp": ("wa", "wa.me", "whatsapp.com"),
    "telegram": ("tg", "t.me", "telegram.org"),
    "chatgpt": ("chatgpt.com", "chat.openai.com", "openai", "openai.com"),
    "perplexity": ("perplexity.ai", "pplx"),
    "claude": ("claude.ai", "anthropic"),
    "gemini": ("gemini.google.com", "bard"),
    "copilot": ("copilot.microsoft.com",),
}
SOURCE_ALIASES: Final = MappingProxyType(
    {alias: canonical for canonical, aliases in _SOURCE_ALIASES.items() for alias in aliases}
)

# ---------------------------------------------------------------------------------------------------------
# CH-3 medium classes: class -> {canonical: aliases}. Values are already in UTM-4 form (lower, "_").
# ---------------------------------------------------------------------------------------------------------

MEDIUM_CLASSES: Final[tuple[str, ...]] = (
    "paid_search", "paid", "paid_social", "display", "video", "social", "email", "affiliate", "referral",
    "organic", "ai", "other_known", "none",
)

_MEDIUMS: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "paid_search": {"cpc": ("ppc", "paidsearch", "paid_search", "sem", "search_ads", "searchads", "adwords")},
    "paid": {
        "paid": (
            "paid_media", "paidmedia", "ads", "ad", "cpa", "cpp", "retargeting", "remarketing", "sponsored",
        )
    },
    "paid_social": {"paid_social": ("paidsocial", "social_paid", "socialpaid", "social_ads", "cpm_social")},
    "display": {
        "display": (
            "banner", "banners", "cpm", "gdn", "programmatic", "native", "expandable", "interstitial",
            "rich_media", "dsp",
        )
    },
    "video": {"video": ("cpv", "paid_video", "video_ads")},
    "social": {
        "social": ("social_media", "socialmedia", "social_network", "social_networks", "sm", "organic_social")
    },
    "email": {"email": ("e_mail", "mail", "newsletter", "newsletters", "edm", "email_marketing")},
    "affiliate": {"affiliate": ("affiliates", "aff", "partner", "partners", "partnership")},
    "referral": {"referral": ("referrals", "link", "links", "backlink")},
    "organic": {"organic": ("seo", "organic_search")},
    "ai": {"ai": ("aeo", "ai_search", "llm", "chatbot", "genai")},
    "other_known": {
        "sms": ("text", "mms", "push", "push_notification", "notification", "mobile_push", "in_app"),
        "qr": ("qr_code", "qrcode"),
        "print": (),
        "offline": (),
        "ooh": (),
        "tv": (),
        "radio": (),
        "podcast": (),
        "audio": (),
        "direct_mail": (),
    },
    "none": {"none": ("(none)", "not_set", "(not_set)", "direct", "(direct)")},
}


def _medium_aliases() -> dict[str, tuple[str, str]]:
    table: dict[str, tuple[str, str]] = {}
    for cls, canonicals in _MEDIUMS.items():
        for canonical, aliases in canonicals.items():
            table.setdefault(canonical, (canonical, cls))
            for alias in aliases:
                table.setdefault(alias, (canonical, cls))
    return table


# medium (UTM-4 form) -> (canonical medium, class)
MEDIUM_ALIASES: Final = MappingProxyType(_medium_aliases())

# ---------------------------------------------------------------------------------------------------------
# REF-3 default referral exclusions (payment and sign-in round trips).
# ---------------------------------------------------------------------------------------------------------

DEFAULT_REFERRAL_EXCLUSIONS: Final[frozenset[str]] = frozenset({
    "paypal.com", "paypal.me", "stripe.com", "klarna.com", "afterpay.com", "clearpay.co.uk", "affirm.com",
    "sezzle.com", "zip.co", "pay.google.com", "pay.amazon.com", "payments.amazon.com", "checkout.shopify.com",
    "adyen.com", "mollie.com", "checkout.com", "braintreegateway.com", "authorize.net", "2checkout.com",
    "worldpay.com", "accounts.google.com", "appleid.apple.com", "login.microsoftonline.com", "login.live.com",
    "auth0.com", "okta.com",
})

# ---------------------------------------------------------------------------------------------------------
# REF-6 Android app referrers: package -> category (any other package -> referral).
# ---------------------------------------------------------------------------------------------------------

_APPS: Final[dict[str, tuple[str, ...]]] = {
    "email": (
        "com.google.android.gm", "com.microsoft.office.outlook", "com.yahoo.mobile.client.android.mail",
        "ch.protonmail.android",
    ),
    "search": ("com.google.android.googlequicksearchbox",),
    "video": ("com.google.android.youtube",),
    "social": (
        "com.facebook.katana", "com.facebook.orca", "com.instagram.android", "com.linkedin.android",
        "com.twitter.android", "com.zhiliaoapp.musically", "com.reddit.frontpage", "com.pinterest",
        "org.telegram.messenger", "com.whatsapp", "com.snapchat.android",
    ),
    "ai": ("com.openai.chatgpt", "ai.perplexity.app.android"),
}
APP_CATEGORY: Final = MappingProxyType({pkg: category for category, pkgs in _APPS.items() for pkg in pkgs})

# ---------------------------------------------------------------------------------------------------------
# BOT-2 built-in spam referrers (host or parent domain). The operator file and account setting are added by
# the caller through SiteConfig.spam_referrers.
# ---------------------------------------------------------------------------------------------------------

SPAM_REFERRERS: Final[frozenset[str]] = frozenset({
    "semalt.com", "darodar.com", "ilovevitaly.com", "ilovevitaly.ru", "priceg.com", "blackhatworth.com",
    "hulfingtonpost.com", "buttons-for-website.com", "buttons-for-your-website.com", "best-seo-offer.com",
    "best-seo-solution.com", "free-share-buttons.com", "get-free-traffic-now.com", "social-buttons.com",
    "simple-share-buttons.com", "floating-share-buttons.com", "trafficmonetize.com", "success-seo.com",
    "videos-for-your-business.com", "event-tracking.com", "7makemoneyonline.com", "webmonetizer.net",
})

# ---------------------------------------------------------------------------------------------------------
# CLK-1 click identifiers, in table order: (parameter, tier, channel).
# ---------------------------------------------------------------------------------------------------------

CLICK_IDS: Final[tuple[tuple[str, int, str], ...]] = (
    ("gclid", 1, "paid_search"),
    ("gbraid", 1, "paid_search"),
    ("wbraid", 1, "paid_search"),
    ("gclsrc", 1, "paid_search"),
    ("gad_source", 1, "paid_search"),
    ("dclid", 1, "display"),
    ("msclkid", 1, "paid_search"),
    ("yclid", 1, "paid_search"),
    ("sznclid", 1, "paid_search"),
    ("s_kwcid", 1, "paid_search"),
    ("ttclid", 1, "paid_social"),
    ("twclid", 1, "paid_social"),
    ("li_fat_id", 1, "paid_social"),
    ("epik", 1, "paid_social"),
    ("sccid", 1, "paid_social"),
    ("rdt_cid", 1, "paid_social"),
    ("qclid", 1, "paid_social"),
    ("tblci", 1, "display"),
    ("irclickid", 2, "affiliate"),
    ("cjevent", 2, "affiliate"),
    ("awc", 2, "affiliate"),
    ("sscid", 2, "affiliate"),
    ("mc_cid", 2, "email"),
    ("mc_eid", 2, "email"),
    ("_kx", 2, "email"),
    ("fbclid", 2, "organic_social"),
    ("igshid", 2, "organic_social"),
    ("srsltid", 2, "organic_search"),
)
# CLK-2 applies to the Google Ads ids only (dclid is Google too but is display by its own row).
GOOGLE_ADS_CLICK_IDS: Final[frozenset[str]] = frozenset({"gclid", "gbraid", "wbraid", "gclsrc", "gad_source"})

# ID-12 query parameters whose values are redacted in stored URLs.
REDACTED_QUERY_PARAMS: Final[frozenset[str]] = frozenset({
    "password", "passwd", "pwd", "token", "access_token", "id_token", "refresh_token", "code", "api_key",
    "apikey", "secret", "auth", "authorization", "session", "sessionid", "sid",
})
