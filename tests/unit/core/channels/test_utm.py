"""UTM extraction and canonicalization: sessions.md UTM-1..UTM-5, CH-3 medium aliases."""

from __future__ import annotations

import hashlib

import pytest

from core.channels import traffic_for
from core.channels.sources import MEDIUM_ALIASES, SOURCE_ALIASES
from core.channels.utm import (
    canonical_source,
    canonical_utm,
    clean_value,
    medium_info,
    query_of,
    query_pairs,
    utm_from_pairs,
)

ACME = "https://www.acme.com/"
JANE_HASH = "sha256:" + hashlib.sha256(b"jane@example.com").hexdigest()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?utm_source=google", {"utm_source": "google"}),
        ("?UTM_Source=Google", {"utm_source": "Google"}),
        ("?utm_source=&utm_source=bing&utm_source=yahoo", {"utm_source": "bing"}),
        ("?utm_source=%20%20&utm_source=second", {"utm_source": "second"}),
        ("?utm_campaign=black+friday%21", {"utm_campaign": "black friday!"}),
        ("?utm_term=caf%C3%A9", {"utm_term": "café"}),
        ("?utm%5Fmedium=cpc", {"utm_medium": "cpc"}),
        (
            "?utm_id=1&utm_source_platform=sa360&utm_creative_format=video&utm_marketing_tactic=prospecting",
            {"utm_id": "1", "utm_source_platform": "sa360", "utm_creative_format": "video",
             "utm_marketing_tactic": "prospecting"},
        ),
        ("?utm_foo=1&utm=2&source=3", {}),
        ("#utm_source=google", {}),
        ("?a=1#utm_source=google", {}),
    ],
    ids=lambda v: str(v),
)
def test_UTM1_extraction(query: str, expected: dict[str, str]) -> None:
    assert utm_from_pairs(query_pairs(query_of(ACME + query))) == expected
    assert traffic_for(ACME + query, None).utm_raw == expected


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("  google  ", "google"),
        ("Black\tFriday\x00", "BlackFriday"),
        ("spring   \u00a0 promo", "spring promo"),
        ("a\nb", "ab"),
        ("", None),
        ("   ", None),
        ("\x01\x02", None),
        ("x" * 300, "x" * 255),
        ("Jane@Example.com", JANE_HASH),
        (" jane@example.com ", JANE_HASH),
        ("contact jane@example.com", "contact jane@example.com"),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_UTM2_cleaning(raw: str, cleaned: str | None) -> None:
    assert clean_value(raw) == cleaned


def test_UTM2_email_in_url_is_hashed_everywhere() -> None:
    t = traffic_for(ACME + "?utm_source=newsletter&utm_content=Jane%40Example.com", None)
    assert t.utm_raw["utm_content"] == JANE_HASH
    assert t.utm["utm_content"] == JANE_HASH
    assert t.landing_url is not None and "jane" not in t.landing_url.lower()


@pytest.mark.parametrize(("alias", "canonical"), sorted(SOURCE_ALIASES.items()), ids=lambda v: str(v))
def test_UTM3_alias_table(alias: str, canonical: str) -> None:
    assert canonical_source(alias) == canonical
    assert canonical_source(alias.upper()) == canonical


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("telegraph", "telegraph"),
        ("Google", "google"),
        ("www.google.com", "google"),
        ("google.com/", "google"),
        ("WWW.Facebook.com/", "facebook"),
        ("Google Ads", "google"),
        ("googl", "googl"),
        ("spring_promo", "spring_promo"),
        ("www.", None),
        ("/", None),
        (None, None),
    ],
    ids=lambda v: str(v),
)
def test_UTM3_source_canonicalization(raw: str | None, canonical: str | None) -> None:
    assert canonical_source(raw) == canonical


@pytest.mark.parametrize(
    ("alias", "expected"), sorted(MEDIUM_ALIASES.items()), ids=lambda v: str(v)
)
def test_UTM4_CH3_alias_table(alias: str, expected: tuple[str, str]) -> None:
    assert medium_info(alias) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Paid-Social", ("paid_social", "paid_social")),
        ("Paid Social", ("paid_social", "paid_social")),
        ("PAID.SOCIAL", ("paid_social", "paid_social")),
        ("e-mail", ("email", "email")),
        ("E Mail", ("email", "email")),
        ("not set", ("none", "none")),
        ("(not set)", ("none", "none")),
        ("(none)", ("none", "none")),
        ("push-notification", ("sms", "other_known")),
        ("QR-Code", ("qr", "other_known")),
        ("rich media", ("display", "display")),
        ("direct mail", ("direct_mail", "other_known")),
        # UTM-4 patterns: class given, value kept as normalized
        ("paid--social  ig", ("paid_social_ig", "paid_social")),
        ("instagram-social-ads", ("instagram_social_ads", "paid_social")),
        ("brand_cpc", ("brand_cpc", "paid_search")),
        ("ppc-generic", ("ppc_generic", "paid_search")),
        ("paid_search_brand", ("paid_search_brand", "paid")),  # not an alias; "starts with paid"
        ("paidmedia_q4", ("paidmedia_q4", "paid")),
        ("cpl", ("cpl", "paid")),
        ("display-remarketing", ("display_remarketing", "display")),
        ("top_banner", ("top_banner", "display")),
        ("facebook_social", ("facebook_social", "social")),
        ("hotmail", ("hotmail", "email")),
        ("weekly_newsletter", ("weekly_newsletter", "email")),
        ("affiliate_program", ("affiliate_program", "affiliate")),
        ("tiktok_video", ("tiktok_video", "video")),
        ("web-push", ("web_push", "other_known")),
        ("smsblast", ("smsblast", "other_known")),
        ("blogpost", ("blogpost", None)),
        ("partner blog", ("partner_blog", None)),
        ("", (None, None)),
        (None, (None, None)),
    ],
    ids=lambda v: str(v),
)
def test_UTM4_medium(raw: str | None, expected: tuple[str | None, str | None]) -> None:
    assert medium_info(raw) == expected


def test_UTM5_campaign_lowercased_content_term_keep_case() -> None:
    canonical = canonical_utm(
        {"utm_source": "FB", "utm_medium": "CPC", "utm_campaign": "Black_Friday", "utm_content": "Hero-A",
         "utm_term": "Running Shoes"}
    )
    assert canonical == {
        "utm_source": "facebook",
        "utm_medium": "cpc",
        "utm_campaign": "black_friday",
        "utm_content": "Hero-A",
        "utm_term": "Running Shoes",
    }


def test_UTM5_campaigns_group_together() -> None:
    a = traffic_for(ACME + "?utm_source=google&utm_campaign=Black_Friday", None)
    b = traffic_for(ACME + "?utm_source=google&utm_campaign=black_friday", None)
    assert a.source_key == b.source_key
    assert a.utm_raw["utm_campaign"] == "Black_Friday"
