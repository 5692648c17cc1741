"""Referrer parsing and matching (sessions.md REF-1..REF-4, REF-6, BOT-2).

Referrer strings come from browsers, SDKs and scrapers alike, so parsing is lenient where browsers are
lenient and gives "no referrer" (never an error) for anything else.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import tldextract

from core.channels.sources import (
    APP_CATEGORY,
    CATEGORIES,
    DEFAULT_REFERRAL_EXCLUSIONS,
    FAMILY_CATEGORY,
    HOST_CATEGORY,
    SPAM_REFERRERS,
    WEBMAIL_LABEL,
)
from core.channels.utm import canonical_source

# REF-1: the bundled Public Suffix List snapshot only: no URL to fetch, no disk cache to read or write.
_EXTRACT: Final = tldextract.TLDExtract(
    cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True, include_psl_private_domains=False
)

MAX_REFERRER_URL_LEN: Final = 2048
# Account categories (REF-4 channel_sources): REF-5's, plus `direct` (CH-4) and `referral` so an account can
# demote a built-in host to a plain referral.
ACCOUNT_CATEGORIES: Final = frozenset(CATEGORIES) | {"direct", "referral"}

_SCHEME_RE: Final = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*):(.*)", re.DOTALL)
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")
_LABEL: Final = r"[a-z0-9_](?:[a-z0-9_\-]*[a-z0-9_])?"
_ASCII_HOST_RE: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_NUMERIC_LABEL_RE: Final = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
_PACKAGE_RE: Final = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)*")


@dataclass(frozen=True, slots=True)
class Referrer:
    """A parsed referrer. `host` is REF-1-normalized, or the package name for an app referrer (REF-6)."""

    url: str
    host: str
    is_app: bool = False
    is_ip: bool = False


@dataclass(frozen=True, slots=True)
class SiteIndex:
    """Account settings normalized once, so per-event matching is set lookups."""

    site_domains: frozenset[str] = frozenset()
    exclusions: frozenset[str] = frozenset()
    spam: frozenset[str] = frozenset()
    sources: Mapping[str, str] | None = None
    families: Mapping[str, str] | None = None


EMPTY_SITE_INDEX: Final = SiteIndex()


def _split_host(authority: str) -> str:
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else ""
    return host.partition(":")[0]


def _is_ip(host: str) -> bool:
    """BOT-2 IP literal; like WHATWG URL parsing, a host whose last label is a number is an IPv4 address."""
    if host.startswith("["):
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return _NUMERIC_LABEL_RE.fullmatch(host.rpartition(".")[2]) is not None


@lru_cache(maxsize=8192)
def clean_host(raw: str) -> str | None:
    """REF-1 without the `www.` removal: lower-case, IDNA ASCII, no trailing dot; None when not a host."""
    host = raw.strip().lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        return None
    if host.startswith("["):
        if not host.endswith("]"):
            return None
        try:
            return "[" + ipaddress.IPv6Address(host[1:-1]).compressed + "]"
        except ValueError:
            return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii").lower()
        except (UnicodeError, ValueError):
            return None
    if _ASCII_HOST_RE.fullmatch(host) is None:
        return None
    return host


def strip_www(host: str) -> str:
    """REF-1: one leading `www.`."""
    return host[4:] if host.startswith("www.") and len(host) > 4 else host


@lru_cache(maxsize=8192)
def normalize_host(raw: str) -> str | None:
    """REF-1 host normalization; None when the text is not a usable host."""
    host = clean_host(raw)
    if host is None:
        return None
    if host.startswith("["):
        return host[1:-1]
    return strip_www(host)


@lru_cache(maxsize=8192)
def registrable_domain(host: str) -> str:
    """REF-1 registrable domain (eTLD+1).

    Private PSL suffixes count (`alice.github.io` and `bob.github.io` are different sites). A host under no
    known suffix (`acme.test`, `shop.acme.local`) falls back to its last two labels, so dev sites behave like
    real ones; an IP or a bare public suffix is its own registrable domain.
    """
    if not isinstance(host, str):
        return ""
    norm = normalize_host(host) or host.strip().lower()
    if not norm or _is_ip(norm) or ":" in norm:
        return norm
    ext = _EXTRACT(norm, include_psl_private_domains=True)
    if ext.suffix:
        return f"{ext.domain}.{ext.suffix}" if ext.domain else norm
    labels = norm.split(".")
    return ".".join(labels[-2:])


def in_domains(host: str, domains: frozenset[str]) -> bool:
    """REF-2/REF-3/BOT-2: the host or any parent domain is listed."""
    if not domains:
        return False
    if host in domains:
        return True
    dot = host.find(".")
    while dot >= 0:
        if host[dot + 1 :] in domains:
            return True
        dot = host.find(".", dot + 1)
    return False


def _lookup_parents(host: str, table: Mapping[str, str]) -> str | None:
    """REF-4: exact host first, then the longest listed parent."""
    found = table.get(host)
    if found is not None:
        return found
    dot = host.find(".")
    while dot >= 0:
        found = table.get(host[dot + 1 :])
        if found is not None:
            return found
        dot = host.find(".", dot + 1)
    return None


def _family_name(host: str) -> str | None:
    """REF-4 family key: `name` for `name.<public suffix>` or `www.name.<public suffix>`."""
    ext = _EXTRACT(host)
    if ext.suffix and ext.domain and ext.subdomain in ("", "www"):
        return ext.domain
    return None


@lru_cache(maxsize=8192)
def builtin_host_category(host: str) -> str | None:
    """REF-4 against the REF-5 tables: exact, longest parent, family, then the `webmail` label rule."""
    found = _lookup_parents(host, HOST_CATEGORY)
    if found is not None:
        return found
    family = _family_name(host)
    if family is not None:
        found = FAMILY_CATEGORY.get(family)
        if found is not None:
            return found
    if host.partition(".")[0] == WEBMAIL_LABEL:
        return "email"
    return None


def host_category(host: str, site: SiteIndex = EMPTY_SITE_INDEX) -> str | None:
    """REF-4: account entries are consulted first, then the built-in tables."""
    if site.sources:
        found = _lookup_parents(host, site.sources)
        if found is not None:
            return found
    if site.families:
        family = _family_name(host)
        if family is not None and family in site.families:
            return site.families[family]
    return builtin_host_category(host)


def app_category(package: str, site: SiteIndex = EMPTY_SITE_INDEX) -> str | None:
    """REF-6; None means a plain referral."""
    if site.sources and package in site.sources:
        return site.sources[package]
    return APP_CATEGORY.get(package)


def referrer_category(ref: Referrer, site: SiteIndex = EMPTY_SITE_INDEX) -> str | None:
    if ref.is_app:
        return app_category(ref.host, site)
    if ref.is_ip:
        return None
    return host_category(ref.host, site)


def _parse_app(rest: str) -> Referrer | None:
    rest = rest.lstrip("/")
    end = len(rest)
    for sep in "/?#":
        idx = rest.find(sep)
        if 0 <= idx < end:
            end = idx
    package = rest[:end].strip().lower()
    if _PACKAGE_RE.fullmatch(package) is None:
        return None
    path = rest[end:].split("?", 1)[0].split("#", 1)[0]
    url = f"android-app://{package}{path or '/'}"
    return Referrer(url=url[:MAX_REFERRER_URL_LEN], host=package, is_app=True)


@lru_cache(maxsize=8192)
def _parse_referrer(raw: str) -> Referrer | None:
    text = _CONTROL_RE.sub("", raw).strip()
    if not text:
        return None
    if text.startswith("//"):
        text = "https:" + text
    match = _SCHEME_RE.fullmatch(text)
    # `host:443/x` has no scheme; a colon followed by a digit is a port (REF-1: no scheme -> https://).
    if match is None or (not match.group(2).startswith("/") and match.group(2)[:1].isdigit()):
        scheme, rest = "https", text
    else:
        scheme, rest = match.group(1).lower(), match.group(2)
    if scheme == "android-app":
        return _parse_app(rest)
    if scheme not in ("http", "https"):
        return None
    # Browsers accept `https:/host` and backslashes in special URLs; so do we.
    rest = rest.replace("\\", "/").lstrip("/")
    end = len(rest)
    for sep in "/?#":
        idx = rest.find(sep)
        if 0 <= idx < end:
            end = idx
    full_host = clean_host(_split_host(rest[:end]))
    if full_host is None:
        return None
    path = rest[end:].split("#", 1)[0].split("?", 1)[0]
    is_ip = _is_ip(full_host)
    host = full_host[1:-1] if full_host.startswith("[") else strip_www(full_host)
    # ID-12: referrers are stored as scheme, host and path only.
    url = f"{scheme}://{full_host}{path or '/'}"
    return Referrer(url=url[:MAX_REFERRER_URL_LEN], host=host, is_ip=is_ip)


def parse_referrer(raw: str | None) -> Referrer | None:
    """REF-1: `""`, null, unparseable text and non-http(s) schemes other than android-app are no referrer."""
    if not isinstance(raw, str):
        return None
    return _parse_referrer(raw)


@lru_cache(maxsize=8192)
def _url_host(url: str) -> str | None:
    text = url.strip()
    if text.startswith("//"):
        text = "https:" + text
    match = _SCHEME_RE.fullmatch(text)
    if match is None or not match.group(2).startswith("//"):
        return None
    rest = match.group(2).replace("\\", "/").lstrip("/")
    end = len(rest)
    for sep in "/?#":
        idx = rest.find(sep)
        if 0 <= idx < end:
            end = idx
    return normalize_host(_split_host(rest[:end]))


def url_host(url: str | None) -> str | None:
    """REF-1-normalized host of an absolute URL; None for relative URLs such as `/pricing`."""
    if not isinstance(url, str):
        return None
    return _url_host(url)


def _normalize_entry(entry: object) -> str | None:
    """Account and operator entries may be written as URLs or with `www.`; compare them like hosts."""
    if not isinstance(entry, str):
        return None
    text = entry.strip().lower()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0].split("?", 1)[0]
    if not text:
        return None
    return normalize_host(_split_host(text))


def _as_tuple(entries: object) -> tuple[str, ...]:
    """A lone string is one entry, not a sequence of characters."""
    if isinstance(entries, str):
        return (entries,)
    if isinstance(entries, (tuple, list, set, frozenset)):
        return tuple(x for x in entries if isinstance(x, str))
    return ()


def _normalize_entries(entries: tuple[str, ...]) -> frozenset[str]:
    return frozenset(e for e in (_normalize_entry(x) for x in entries) if e)


@lru_cache(maxsize=256)
def _site_index(
    site_domains: tuple[str, ...],
    exclusions: tuple[str, ...],
    spam: tuple[str, ...],
    sources: tuple[tuple[str, str], ...],
) -> SiteIndex:
    exact: dict[str, str] = {}
    families: dict[str, str] = {}
    for key, category in sources:
        cat = category.strip().lower()
        if cat not in ACCOUNT_CATEGORIES:
            continue  # REF-4 ambiguity: unknown categories are ignored rather than guessed.
        k = key.strip().lower()
        if k.endswith(".*") and len(k) > 2:
            families.setdefault(k[:-2], cat)
            continue
        if "." in k:
            host = _normalize_entry(k)
            if host:
                exact.setdefault(host, cat)
        # Tokens are compared with the canonical utm_source (UTM-3), so `fb` also covers `facebook`.
        canonical = canonical_source(k)
        if canonical:
            exact.setdefault(canonical, cat)
    return SiteIndex(
        site_domains=_normalize_entries(site_domains),
        exclusions=_normalize_entries(exclusions),
        spam=_normalize_entries(spam),
        sources=exact or None,
        families=families or None,
    )


def site_index(
    site_domains: tuple[str, ...] = (),
    referral_exclusions: tuple[str, ...] = (),
    spam_referrers: tuple[str, ...] = (),
    channel_sources: Mapping[str, str] | None = None,
) -> SiteIndex:
    if not (site_domains or referral_exclusions or spam_referrers or channel_sources):
        return EMPTY_SITE_INDEX
    items = channel_sources.items() if isinstance(channel_sources, Mapping) else ()
    sources = tuple((k, v) for k, v in items if isinstance(k, str) and isinstance(v, str))
    return _site_index(
        _as_tuple(site_domains), _as_tuple(referral_exclusions), _as_tuple(spam_referrers), sources
    )


def is_internal(ref: Referrer, landing_host: str | None, site: SiteIndex = EMPTY_SITE_INDEX) -> bool:
    """REF-2: same site, a listed site domain, or a default or account exclusion."""
    host = ref.host
    if in_domains(host, site.site_domains) or in_domains(host, site.exclusions):
        return True
    if ref.is_app:
        return False
    if landing_host is not None and registrable_domain(host) == registrable_domain(landing_host):
        return True
    return in_domains(host, DEFAULT_REFERRAL_EXCLUSIONS)


def is_spam(ref: Referrer, site: SiteIndex = EMPTY_SITE_INDEX) -> bool:
    """BOT-2: the host or a parent domain is on the built-in or configured spam list."""
    if ref.is_app:
        return False
    return in_domains(ref.host, SPAM_REFERRERS) or in_domains(ref.host, site.spam)


def referrer_domain(ref: Referrer) -> str:
    """SES-5: registrable domain of a web referrer; the package name of an app referrer (REF-6)."""
    return ref.host if ref.is_app else registrable_domain(ref.host)
