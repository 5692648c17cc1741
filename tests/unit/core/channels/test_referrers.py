"""Referrers: sessions.md REF-1..REF-6."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from core.channels import registrable_domain, traffic_for
from core.channels.referrers import (
    Referrer,
    builtin_host_category,
    host_category,
    is_internal,
    parse_referrer,
    site_index,
)
from core.channels.sources import (
    APP_CATEGORY,
    DEFAULT_REFERRAL_EXCLUSIONS,
    FAMILY_CATEGORY,
    HOST_CATEGORY,
    SPAM_REFERRERS,
)

ACME = "https://www.acme.com/"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("www.google.com", Referrer("https://www.google.com/", "google.com")),
        ("google.com:443/search?q=1", Referrer("https://google.com/search", "google.com")),
        ("//www.bing.com/", Referrer("https://www.bing.com/", "bing.com")),
        ("HTTPS://WWW.Google.COM./search?q=1#x", Referrer("https://www.google.com/search", "google.com")),
        ("https://www.www.example.com/", Referrer("https://www.www.example.com/", "www.example.com")),
        ("https://user:pw@www.example.com:8443/p", Referrer("https://www.example.com/p", "example.com")),
        ("https://bücher.de/x", Referrer("https://xn--bcher-kva.de/x", "xn--bcher-kva.de")),
        ("https:/www.google.com", Referrer("https://www.google.com/", "google.com")),
        ("http://10.1.2.3:8080/", Referrer("http://10.1.2.3/", "10.1.2.3", is_ip=True)),
        ("https://[2001:DB8::1]/a", Referrer("https://[2001:db8::1]/a", "2001:db8::1", is_ip=True)),
        ("android-app://com.google.android.gm/",
         Referrer("android-app://com.google.android.gm/", "com.google.android.gm", is_app=True)),
        ("android-app://com.Google.Android.GM",
         Referrer("android-app://com.google.android.gm/", "com.google.android.gm", is_app=True)),
        ("android-app://", None),
        ("mailto:jane@example.com", None),
        ("about:blank", None),
        ("ftp://example.com/", None),
        ("javascript:void(0)", None),
        ("https://", None),
        ("https://exa mple.com/", None),
        ("https://a..b/", None),
    ],
    ids=lambda v: repr(v)[:50],
)
def test_REF1_parsing(raw: str | None, expected: Referrer | None) -> None:
    assert parse_referrer(raw) == expected


def test_REF1_no_referrer_means_direct() -> None:
    for raw in (None, "", "about:blank", "mailto:x@y.com"):
        t = traffic_for(ACME, raw)
        assert t.channel == "direct" and t.referrer_host is None and t.referrer_url is None


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("www.google.com", "google.com"),
        ("WWW.Google.co.uk", "google.co.uk"),
        ("mail.google.com", "google.com"),
        ("a.b.c.example.com.au", "example.com.au"),
        ("foo.github.io", "foo.github.io"),
        ("bar.foo.github.io", "foo.github.io"),
        ("shop.acme.test", "acme.test"),
        ("localhost", "localhost"),
        ("co.uk", "co.uk"),
        ("203.0.113.9", "203.0.113.9"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("", ""),
    ],
    ids=lambda v: str(v),
)
def test_REF1_registrable_domain(host: str, domain: str) -> None:
    assert registrable_domain(host) == domain


def test_REF1_psl_is_offline() -> None:
    # A fresh interpreter with sockets disabled must still resolve suffixes from the bundled snapshot.
    code = textwrap.dedent(
        """
        import socket
        def no_net(*a, **k):
            raise AssertionError("network used")
        socket.socket.connect = no_net
        socket.create_connection = no_net
        socket.getaddrinfo = no_net
        from core.channels import registrable_domain
        assert registrable_domain("www.google.co.uk") == "google.co.uk"
        assert registrable_domain("foo.bar.github.io") == "bar.github.io"
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def _all_plain_hosts() -> list[tuple[str, str]]:
    return sorted(HOST_CATEGORY.items())


@pytest.mark.parametrize(("host", "category"), _all_plain_hosts(), ids=lambda v: str(v))
def test_REF5_every_host_entry(host: str, category: str) -> None:
    assert builtin_host_category(host) == category
    # REF-4: every subdomain too
    assert builtin_host_category("deep.sub." + host) == category


@pytest.mark.parametrize(("name", "category"), sorted(FAMILY_CATEGORY.items()), ids=lambda v: str(v))
def test_REF4_family_entries(name: str, category: str) -> None:
    for suffix in ("com", "co.uk", "com.au", "de"):
        assert builtin_host_category(f"{name}.{suffix}") == category
        assert builtin_host_category(f"www.{name}.{suffix}") == category
    # Not other subdomains, and not a private suffix posing as one.
    assert builtin_host_category(f"blog.{name}.co.uk") is None
    assert builtin_host_category(f"{name}.blogspot.com") is None


@pytest.mark.parametrize(
    ("host", "category"),
    [
        ("google.com", "search"),
        ("google.co.uk", "search"),
        ("www.google.com.au", "search"),
        ("news.google.com", "search"),
        ("docs.google.com", None),
        ("mail.google.com", "email"),
        ("gemini.google.com", "ai"),
        ("shopping.google.com", "shopping"),
        ("edgeservices.bing.com", "ai"),
        ("cn.bing.com", "search"),
        ("search.yahoo.com", "search"),
        ("us.search.yahoo.com", "search"),
        ("yahoo.com", None),
        ("mail.yahoo.co.jp", "email"),
        ("yahoo.co.jp", "search"),
        ("amazon.de", "shopping"),
        ("aws.amazon.com", None),
        ("gmx.net", "email"),
        ("webmail.example.org", "email"),
        ("webmail2.example.org", None),
        ("mail.webmail.example.org", None),
        ("uk.pinterest.com", "social"),
        ("pinterest.fr", "social"),
        ("l.facebook.com", "social"),
        ("m.youtube.com", "video"),
        ("e.mail.ru", "email"),
        ("mail.ru", None),
        ("grok.x.ai", "ai"),
        ("x.ai", None),
    ],
    ids=lambda v: str(v),
)
def test_REF4_specificity(host: str, category: str | None) -> None:
    assert builtin_host_category(host) == category


def test_REF4_account_entries_are_consulted_first() -> None:
    idx = site_index(channel_sources={"mail.google.com": "ai", "example.org": "video", "corp.*": "email"})
    assert host_category("mail.google.com", idx) == "ai"
    assert host_category("cdn.example.org", idx) == "video"
    assert host_category("corp.co.uk", idx) == "email"
    assert host_category("google.com", idx) == "search"


@pytest.mark.parametrize(("package", "category"), sorted(APP_CATEGORY.items()), ids=lambda v: str(v))
def test_REF6_app_packages(package: str, category: str) -> None:
    channel = {"email": "email", "search": "organic_search", "video": "video", "social": "organic_social",
               "ai": "ai"}[category]
    t = traffic_for(ACME, f"android-app://{package}/")
    assert t.channel == channel
    assert t.referrer_host == package
    assert t.source_key is not None and t.source_key.endswith("|" + package)


def test_REF6_unknown_package_is_referral() -> None:
    t = traffic_for(ACME, "android-app://com.example.reader/path")
    assert t.channel == "referral"
    assert t.referrer_url == "android-app://com.example.reader/path"


@pytest.mark.parametrize("host", sorted(DEFAULT_REFERRAL_EXCLUSIONS))
def test_REF3_default_exclusions(host: str) -> None:
    for ref_host in (host, "www." + host, "sub." + host):
        ref = parse_referrer(f"https://{ref_host}/return")
        assert ref is not None
        assert is_internal(ref, "acme.com")
    assert traffic_for(ACME, f"https://{host}/x").channel == "direct"


def test_REF3_not_a_suffix_match() -> None:
    ref = parse_referrer("https://notpaypal.com/")
    assert ref is not None and not is_internal(ref, "acme.com")


@pytest.mark.parametrize("host", sorted(SPAM_REFERRERS))
def test_BOT2_spam_list(host: str) -> None:
    assert traffic_for(ACME, f"https://{host}/").exclusion_reason == "spam_referrer"
    assert traffic_for(ACME, f"https://www.{host}/").exclusion_reason == "spam_referrer"
