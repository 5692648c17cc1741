"""Channel classification: sessions.md CH-1..CH-5, CLK-1/CLK-2, SES-4/SES-5, BOT-2/BOT-4."""

from __future__ import annotations

import pytest

from core.channels import CHANNELS, SiteConfig, Traffic, traffic_for
from core.channels import classify as classify_mod

ACME = "https://www.acme.com/"

# CH-5: URL of https://www.acme.com/ plus the query shown.
CH5_VECTORS: list[tuple[int, str, str | None, str]] = [
    (1, "?gclid=Cj0KC", "https://www.google.com/", "paid_search"),
    (2, "?gclid=Cj0KC&utm_medium=display", None, "display"),
    (3, "?utm_source=facebook&utm_medium=cpc", None, "paid_social"),
    (4, "?utm_source=fb&utm_medium=Paid-Social", None, "paid_social"),
    (5, "?utm_source=facebook&utm_medium=social", None, "organic_social"),
    (6, "?utm_source=facebook&utm_medium=organic", None, "organic_social"),
    (7, "?utm_source=bing", None, "organic_search"),
    (8, "?utm_source=google&utm_medium=paid", None, "paid_search"),
    (9, "?utm_source=x&utm_medium=paid", None, "paid_social"),
    (10, "?utm_source=newsletter&utm_medium=email", None, "email"),
    (11, "?utm_source=chatgpt.com", None, "ai"),
    (12, "?utm_source=dv360&utm_medium=cpm", None, "display"),
    (13, "?utm_source=spring_promo", None, "other"),
    (14, "?utm_source=partnerblog&utm_medium=blogpost", "https://blog.partner.org/p/1", "referral"),
    (15, "?utm_source=direct&utm_medium=(none)", None, "direct"),
    (16, "?utm_medium=sms", None, "other"),
    (17, "?fbclid=IwAR0", "https://l.facebook.com/", "organic_social"),
    (18, "?fbclid=IwAR0&utm_source=facebook&utm_medium=paid_social", "https://l.facebook.com/",
     "paid_social"),
    (19, "?srsltid=AfmBOo", "https://www.google.com/", "organic_search"),
    (20, "?irclickid=abc", None, "affiliate"),
    (21, "", "https://www.google.co.uk/", "organic_search"),
    (22, "", "https://mail.google.com/", "email"),
    (23, "", "https://docs.google.com/document/d/1", "referral"),
    (24, "", "https://chatgpt.com/", "ai"),
    (25, "", "https://www.youtube.com/watch?v=1", "video"),
    (26, "", "android-app://com.google.android.gm/", "email"),
    (27, "", "https://checkout.acme.com/", "direct"),
    (28, "", "https://www.paypal.com/checkoutnow", "direct"),
    (29, "?utm_source=newsletter&utm_medium=email", "https://www.acme.com/sale", "direct"),
    (30, "", None, "direct"),
]


def test_CH5_has_all_30_vectors() -> None:
    assert [n for n, *_ in CH5_VECTORS] == list(range(1, 31))


@pytest.mark.parametrize(
    ("query", "referrer", "channel"),
    [(q, r, c) for _, q, r, c in CH5_VECTORS],
    ids=[f"CH5-{n:02d}" for n, *_ in CH5_VECTORS],
)
def test_CH5_vectors(query: str, referrer: str | None, channel: str) -> None:
    assert traffic_for(ACME + query, referrer).channel == channel


def test_CH1_twelve_channels_in_order() -> None:
    assert CHANNELS == (
        "paid_search", "organic_search", "paid_social", "organic_social", "email", "display", "affiliate",
        "referral", "video", "ai", "direct", "other",
    )


def test_SES5_example_key() -> None:
    t = traffic_for(
        ACME + "?utm_source=google&utm_medium=cpc&utm_campaign=brand&gclid=Cj0KC", "https://www.google.com/"
    )
    assert t.source_key == "paid_search|google|cpc|brand|||gclid=Cj0KC|google.com"
    assert t.has_signals


@pytest.mark.parametrize(
    ("url", "referrer", "key"),
    [
        (ACME + "?fbclid=b&gclid=a", None, "paid_search||||||fbclid=b&gclid=a|"),
        (ACME, "https://l.facebook.com/x", "organic_social|||||||facebook.com"),
        (ACME, "android-app://com.whatsapp", "organic_social|||||||com.whatsapp"),
        (ACME + "?utm_source=FB&utm_campaign=Black_Friday&utm_content=Hero", None,
         "organic_social|facebook||black_friday|Hero|||"),
    ],
    ids=["SES5-clickids-sorted", "SES5-referrer-domain", "SES5-app-package", "SES5-canonical-values"],
)
def test_SES5_source_keys(url: str, referrer: str | None, key: str) -> None:
    assert traffic_for(url, referrer).source_key == key


def test_SES5_same_source_same_key() -> None:
    a = traffic_for(ACME + "?utm_source=Facebook&utm_medium=Paid-Social", None)
    b = traffic_for("https://www.acme.com/other?utm_medium=paid_social&utm_source=fb", None)
    assert a.source_key == b.source_key


@pytest.mark.parametrize(
    ("url", "referrer", "signals"),
    [
        (ACME, None, False),
        (ACME + "?utm_campaign=x", None, True),
        (ACME + "?utm_id=42", None, False),  # stored-only parameter (UTM-1)
        (ACME + "?gclid=x", None, True),
        (ACME, "https://news.site.org/", True),
        (ACME, "https://shop.acme.com/", False),
        (ACME + "?utm_source=google&gclid=x", "https://www.acme.com/", False),
        (ACME, "https://www.paypal.com/", False),
    ],
    ids=["SES4-none", "SES4-campaign", "SES4-utm_id-only", "SES4-clickid", "SES4-external",
         "SES4-internal", "SES4-internal-with-tags", "SES4-excluded"],
)
def test_SES4_signals(url: str, referrer: str | None, signals: bool) -> None:
    t = traffic_for(url, referrer)
    assert t.has_signals is signals
    assert (t.source_key is not None) is signals


def test_SES4_internal_tags_are_recorded_but_do_not_count() -> None:
    t = traffic_for(ACME + "?utm_source=promo_banner&gclid=abc", "https://www.acme.com/home")
    assert t.channel == "direct"
    assert t.referrer_internal
    assert not t.has_signals
    assert t.utm_raw == {"utm_source": "promo_banner"}
    assert t.click_ids == {"gclid": "abc"}


@pytest.mark.parametrize(
    ("query", "referrer", "channel"),
    [
        # rule 2 beats rule 3 unless CLK-2 refines
        ("?msclkid=1&utm_medium=email", None, "paid_search"),
        ("?ttclid=1&utm_source=google&utm_medium=cpc", None, "paid_social"),
        # rule 4 beats rule 5
        ("?fbclid=1&utm_source=newsletter", None, "email"),
        ("?fbclid=1&utm_source=spring_promo", None, "organic_social"),
        # rule 6: unrecognized tags
        ("?utm_source=spring_promo", "https://blog.example.org/", "referral"),
        ("?utm_source=spring_promo", "https://www.bing.com/", "organic_search"),
        ("?utm_medium=weird", None, "other"),
        ("?utm_medium=weird", "https://chatgpt.com/", "ai"),
        # campaign/content/term alone do not count for rules 3-6
        ("?utm_campaign=summer", None, "direct"),
        ("?utm_term=shoes&utm_content=a", "https://www.bing.com/", "organic_search"),
        # rule 7 categories
        ("", "https://www.amazon.co.uk/dp/1", "referral"),
        ("", "https://example.org/", "referral"),
        ("", "android-app://com.example.unknown", "referral"),
    ],
    ids=["CH2-r2-msclkid", "CH2-r2-ttclid", "CH2-r4-before-tier2", "CH2-r5-tier2",
         "CH2-r6-external-referral", "CH2-r6-external-search", "CH2-r6-other", "CH2-r6-ai",
         "CH2-campaign-only", "CH2-term-content-only", "CH2-r7-shopping", "CH2-r7-none", "CH2-r7-app-other"],
)
def test_CH2_decision_order(query: str, referrer: str | None, channel: str) -> None:
    assert traffic_for(ACME + query, referrer).channel == channel


@pytest.mark.parametrize(
    ("medium", "source", "channel"),
    [
        ("cpc", None, "paid_search"),
        ("ppc", "google", "paid_search"),
        ("cpc", "linkedin", "paid_social"),
        ("cpc", "youtube", "video"),
        ("paid", None, "other"),
        ("paid", "amazon", "paid_search"),
        ("paid", "tiktok", "paid_social"),
        ("paid", "vimeo", "video"),
        ("paid", "chatgpt", "other"),
        ("paidsocial", "google", "paid_social"),
        ("banner", None, "display"),
        ("cpv", None, "video"),
        ("social_media", "google", "organic_social"),
        ("newsletter", None, "email"),
        ("partners", None, "affiliate"),
        ("backlink", None, "referral"),
        ("seo", None, "organic_search"),
        ("organic", "instagram", "organic_social"),
        ("organic", "youtube", "video"),
        ("llm", None, "ai"),
        ("push", None, "other"),
        ("qr code", None, "other"),
        ("direct_mail", None, "other"),
        ("(not set)", None, "direct"),
        ("none", "google", "direct"),
        # UTM-4 patterns
        ("paid-social-retarget", None, "paid_social"),
        ("social_ads_q3", None, "paid_social"),
        ("google_cpc_brand", None, "paid_search"),
        ("cpm-video", None, "other"),  # starts with cp -> paid class; no source -> other
        ("paid_q3", "bing", "paid_search"),
        ("display_retargeting", None, "display"),
        ("social_post", None, "organic_social"),
        ("gmail_promo", None, "email"),
        ("affiliate_network", None, "affiliate"),
        ("youtube_video", None, "video"),
        ("web_push", None, "other"),
        ("bulk_sms_blast", None, "other"),
    ],
    ids=lambda v: str(v),
)
def test_CH3_medium_classes(medium: str, source: str | None, channel: str) -> None:
    query = f"?utm_medium={medium}" + (f"&utm_source={source}" if source else "")
    assert traffic_for(ACME + query, None).channel == channel


def test_CH3_referrer_stands_in_for_missing_source() -> None:
    # Ambiguity resolved in classify.decide_channel: no utm_source -> the external referrer is the source.
    assert traffic_for(ACME + "?utm_medium=paid", "https://l.facebook.com/").channel == "paid_social"
    assert traffic_for(ACME + "?utm_medium=cpc", "https://m.youtube.com/").channel == "video"


@pytest.mark.parametrize(
    ("source", "channel"),
    [
        ("google", "organic_search"),
        ("Yandex", "organic_search"),
        ("IG", "organic_social"),
        ("twitch", "video"),
        ("etsy", "referral"),
        ("klaviyo", "email"),
        ("perplexity.ai", "ai"),
        ("(direct)", "direct"),
        ("google.co.uk", "organic_search"),
        ("www.pinterest.de", "organic_social"),
        ("webmail.corp.example", "email"),
        ("news.example.com", "other"),
    ],
    ids=lambda v: str(v),
)
def test_CH4_source_categories(source: str, channel: str) -> None:
    assert traffic_for(f"{ACME}?utm_source={source}", None).channel == channel


@pytest.mark.parametrize(
    ("query", "channel"),
    [
        ("?gclid=a", "paid_search"),
        ("?gbraid=a", "paid_search"),
        ("?wbraid=a", "paid_search"),
        ("?gclsrc=aw.ds", "paid_search"),
        ("?gad_source=1", "paid_search"),
        ("?dclid=a", "display"),
        ("?dclid=a&utm_medium=video", "display"),
        ("?msclkid=a", "paid_search"),
        ("?yclid=a", "paid_search"),
        ("?sznclid=a", "paid_search"),
        ("?s_kwcid=AL!1", "paid_search"),
        ("?ttclid=a", "paid_social"),
        ("?twclid=a", "paid_social"),
        ("?li_fat_id=a", "paid_social"),
        ("?epik=a", "paid_social"),
        ("?sccid=a", "paid_social"),
        ("?rdt_cid=a", "paid_social"),
        ("?qclid=a", "paid_social"),
        ("?tblci=a", "display"),
        ("?irclickid=a", "affiliate"),
        ("?cjevent=a", "affiliate"),
        ("?awc=a", "affiliate"),
        ("?sscid=a", "affiliate"),
        ("?mc_cid=a", "email"),
        ("?mc_eid=a", "email"),
        ("?_kx=a", "email"),
        ("?fbclid=a", "organic_social"),
        ("?igshid=a", "organic_social"),
        ("?srsltid=a", "organic_search"),
        ("?GCLID=a", "paid_search"),
        ("?gclid=&msclkid=b", "paid_search"),
        ("?fbclid=a&ttclid=b", "paid_social"),
        ("?irclickid=a&fbclid=b", "affiliate"),
        ("?gclid=a&dclid=b", "paid_search"),
    ],
    ids=lambda v: str(v),
)
def test_CLK1_click_ids(query: str, channel: str) -> None:
    assert traffic_for(ACME + query, None).channel == channel


@pytest.mark.parametrize(
    ("query", "channel"),
    [
        ("?gclid=a&utm_medium=banner", "display"),
        ("?gbraid=a&utm_medium=cpv", "video"),
        ("?wbraid=a&utm_source=YouTube", "video"),
        ("?gclid=a&utm_medium=email", "paid_search"),
        ("?gclid=a&utm_source=facebook", "paid_search"),
    ],
    ids=lambda v: str(v),
)
def test_CLK2_google_refinement(query: str, channel: str) -> None:
    assert traffic_for(ACME + query, None).channel == channel


def test_CLK1_values_first_non_empty_and_cut() -> None:
    long = "x" * 600
    t = traffic_for(f"{ACME}?gclid=&GCLID={long}&gclid=second&fbclid=f", None)
    assert t.click_ids == {"gclid": "x" * 512, "fbclid": "f"}


@pytest.mark.parametrize(
    ("url", "referrer", "site", "reason"),
    [
        ("https://gtm-msr.appspot.com/render?id=GTM-1", None, None, "test_ping"),
        (ACME, "http://203.0.113.9/x", None, "ip_referrer"),
        (ACME, "https://[2001:db8::1]/", None, "ip_referrer"),
        (ACME, "http://semalt.com/", None, "spam_referrer"),
        (ACME, "https://www.best-seo-offer.com/x", None, "spam_referrer"),
        (ACME, "https://sub.darodar.com/", None, "spam_referrer"),
        (ACME, "https://junk.example/", SiteConfig(spam_referrers=("junk.example",)), "spam_referrer"),
        (ACME, "https://www.google.com/", None, None),
        ("http://10.0.0.5:8000/", "http://10.0.0.5:8000/cart", None, None),
    ],
    ids=["BOT4-test-ping", "BOT2-ipv4", "BOT2-ipv6", "BOT2-spam", "BOT2-spam-www", "BOT2-spam-parent",
         "BOT2-account-spam", "BOT2-clean", "BOT2-internal-ip-not-spam"],
)
def test_BOT2_BOT4_exclusions(
    url: str, referrer: str | None, site: SiteConfig | None, reason: str | None
) -> None:
    t = traffic_for(url, referrer, site=site)
    assert t.exclusion_reason == reason
    assert t.channel in CHANNELS  # BOT-3: the channel is still computed


def test_BOT2_spam_channel_is_still_computed() -> None:
    t = traffic_for(ACME, "http://semalt.com/")
    assert t.channel == "referral"
    assert t.has_signals


@pytest.mark.parametrize(
    ("url", "referrer", "site", "internal"),
    [
        (ACME, "https://acme.com/", None, True),
        (ACME, "https://checkout.acme.com/", None, True),
        ("https://shop.acme.co.uk/", "https://www.acme.co.uk/", None, True),
        ("https://alice.github.io/", "https://bob.github.io/", None, False),
        (ACME, "https://acme-shop.com/", None, False),
        (None, "https://www.acme.com/", None, False),
        (None, "https://www.acme.com/", SiteConfig(site_domains=("acme.com",)), True),
        ("/pricing", "https://blog.acme.com/", SiteConfig(site_domains=("https://www.acme.com/",)), True),
        (ACME, "https://acme-shop.com/", SiteConfig(site_domains=("acme.com", "acme-shop.com")), True),
        (ACME, "https://sso.partner.io/login", SiteConfig(referral_exclusions=("partner.io",)), True),
        (ACME, "https://www.klarna.com/", None, True),
        (ACME, "https://accounts.google.com/o/oauth2", None, True),
        (ACME, "https://google.com/", None, False),
        (ACME, "android-app://com.acme.app", SiteConfig(site_domains=("com.acme.app",)), True),
    ],
    ids=["REF2-same-host", "REF2-subdomain", "REF2-psl", "REF2-private-psl", "REF2-other-site", "REF2-no-url",
         "REF2-site-domains", "REF2-site-domains-url-form", "REF2-multi-domain", "REF2-account-exclusion",
         "REF3-klarna", "REF3-google-accounts", "REF3-google-search-not-excluded", "REF2-own-app"],
)
def test_REF2_internal(url: str | None, referrer: str, site: SiteConfig | None, internal: bool) -> None:
    t = traffic_for(url, referrer, site=site)
    assert t.referrer_internal is internal
    if internal:
        assert t.channel == "direct"


def test_REF4_account_channel_sources_first() -> None:
    site = SiteConfig(
        channel_sources={
            "docs.google.com": "email",
            "partnerblog": "social",
            "medium.com": "referral",
            "ourshop.*": "shopping",
            "bogus.example": "not-a-category",
        }
    )
    assert traffic_for(ACME, "https://docs.google.com/d/1", site=site).channel == "email"
    assert traffic_for(ACME + "?utm_source=partnerblog", None, site=site).channel == "organic_social"
    assert traffic_for(ACME, "https://medium.com/@x/post", site=site).channel == "referral"
    assert traffic_for(ACME, "https://www.ourshop.de/", site=site).channel == "referral"
    assert traffic_for(ACME, "https://bogus.example/", site=site).channel == "referral"
    # without the account entry
    assert traffic_for(ACME, "https://medium.com/@x/post").channel == "organic_social"


@pytest.mark.parametrize(
    ("url", "explicit", "utm_raw", "channel"),
    [
        (ACME, {"utm_source": "google", "utm_medium": "cpc"}, {"utm_source": "google", "utm_medium": "cpc"},
         "paid_search"),
        (None, {"UTM_SOURCE": "Facebook"}, {"utm_source": "Facebook"}, "organic_social"),
        (ACME + "?utm_source=bing", {"utm_medium": "cpc"}, {"utm_source": "bing"}, "organic_search"),
        (ACME + "?utm_id=7", {"utm_source": "klaviyo", "utm_id": "9"},
         {"utm_source": "klaviyo", "utm_id": "7"}, "email"),
        (ACME, {"utm_source": 42, "utm_medium": None, "other": "x"}, {}, "direct"),
        (ACME + "?utm_source=", {"utm_source": "bing"}, {"utm_source": "bing"}, "organic_search"),
    ],
    ids=["UTM1-explicit", "UTM1-explicit-no-url", "UTM1-url-wins", "UTM1-explicit-with-stored-only",
         "UTM1-non-str-ignored", "UTM1-empty-url-value-is-absent"],
)
def test_UTM1_explicit_fields(
    url: str | None, explicit: dict[str, object], utm_raw: dict[str, str], channel: str
) -> None:
    t = traffic_for(url, None, explicit)
    assert t.utm_raw == utm_raw
    assert t.channel == channel


def test_UTM1_referrer_query_is_never_read() -> None:
    t = traffic_for(ACME, "https://blog.example.org/?utm_source=google&utm_medium=cpc&gclid=x")
    assert t.utm_raw == {}
    assert t.click_ids == {}
    assert t.channel == "referral"
    assert t.referrer_url == "https://blog.example.org/"


def test_traffic_fields() -> None:
    t = traffic_for(
        "https://WWW.Acme.com:443/landing?utm_source=FB&utm_medium=Paid%20Social&token=s3cr3t#top",
        "https://l.facebook.com/l.php?u=x",
    )
    assert t == Traffic(
        channel="paid_social",
        has_signals=True,
        source_key="paid_social|facebook|paid_social|||||facebook.com",
        utm={"utm_source": "facebook", "utm_medium": "paid_social", "utm_campaign": None, "utm_content": None,
             "utm_term": None},
        utm_raw={"utm_source": "FB", "utm_medium": "Paid Social"},
        click_ids={},
        referrer_url="https://l.facebook.com/l.php",
        referrer_host="l.facebook.com",
        referrer_internal=False,
        landing_url="https://WWW.Acme.com:443/landing?utm_source=FB&utm_medium=Paid%20Social&token=[redacted]",
        landing_host="acme.com",
        exclusion_reason=None,
    )


def test_ID12_landing_url_is_capped() -> None:
    t = traffic_for(ACME + "?q=" + "a" * 5000, None)
    assert t.landing_url is not None and len(t.landing_url) == 2048


@pytest.mark.parametrize(
    "url",
    ["/pricing", "pricing?utm_source=bing", "", "   ", "not a url at all", "?gclid=x"],
)
def test_CH5_relative_and_odd_urls(url: str) -> None:
    t = traffic_for(url, None)
    assert t.channel in CHANNELS
    assert t.landing_host is None


def test_CH5_relative_url_still_reads_query() -> None:
    assert traffic_for("/pricing?utm_source=bing", None).channel == "organic_search"


def test_CH5_total_on_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> Traffic:
        raise RuntimeError("boom")

    monkeypatch.setattr(classify_mod, "_traffic", boom)
    assert traffic_for(ACME + "?utm_source=x", None).channel == "other"
    assert traffic_for(None, None).channel == "direct"
    t = traffic_for(None, "https://www.google.com/")
    assert t.channel == "other" and not t.has_signals


def test_CH5_non_string_inputs() -> None:
    t = traffic_for(123, ["x"], explicit_utm="nope", site="bad")  # type: ignore[arg-type]
    assert t.channel == "direct"


def test_CH5_deterministic() -> None:
    args = (ACME + "?utm_source=google&utm_medium=cpc", "https://www.google.com/")
    assert traffic_for(*args) == traffic_for(*args)


def test_REF2_lone_string_setting_is_one_entry() -> None:
    site = SiteConfig(site_domains="acme.com")  # type: ignore[arg-type]
    assert traffic_for(None, "https://shop.acme.com/", site=site).referrer_internal
