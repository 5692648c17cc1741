"""Email hashing and URL scrubbing (sessions.md ID-6, ID-11, ID-12).

No raw email address or credential-bearing query value may reach storage, so every stored string passes
through here first.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Final
from urllib.parse import unquote_plus

from core.channels.sources import REDACTED_QUERY_PARAMS

EMAIL_RE: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_HEX64_RE: Final = re.compile(r"[0-9a-f]{64}")
REDACTED: Final = "[redacted]"
_Container = dict[object, object] | list[object]
HASH_PREFIX: Final = "sha256:"


def normalize_email(value: str) -> str | None:
    """ID-6: no provider-specific folding, so two spellings a person really uses never collapse wrongly."""
    if not isinstance(value, str):
        return None
    candidate = value.strip().lower()
    # fullmatch, not $: `$` would accept a trailing newline.
    if EMAIL_RE.fullmatch(candidate) is None:
        return None
    return candidate


def email_sha256(value: str) -> str | None:
    """ID-6: callers may send a pre-hashed address; re-hashing it would make it unmatchable."""
    if not isinstance(value, str):
        return None
    candidate = value.strip().lower()
    # ID-6 ambiguity: upper-case hex is accepted too, since lower-casing is part of normalization.
    if _HEX64_RE.fullmatch(candidate) is not None:
        return candidate
    normalized = normalize_email(candidate)
    if normalized is None:
        return None
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


@lru_cache(maxsize=4096)
def hash_email_string(value: str) -> str:
    """ID-11 for one string: only a value that is an address as a whole is replaced, so prose stays intact."""
    if "@" not in value:
        return value
    normalized = normalize_email(value)
    if normalized is None:
        return value
    return HASH_PREFIX + hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def hash_emails(value: object) -> object:
    """ID-11 deep hashing of a JSON-like value.

    Iterative (explicit stack) so that deeply nested input cannot raise RecursionError, and memoised by object
    identity so shared or cyclic containers are copied once instead of looping. Dict keys are left alone;
    tuples come back as lists, as JSON has only arrays.
    """
    if isinstance(value, str):
        return hash_email_string(value)
    if not isinstance(value, (dict, list, tuple)):
        return value

    copies: dict[int, _Container] = {}
    stack: list[tuple[object, _Container]] = []

    def copy_of(src: dict[object, object] | list[object] | tuple[object, ...]) -> _Container:
        existing = copies.get(id(src))
        if existing is not None:
            return existing
        dst: _Container = {} if isinstance(src, dict) else []
        copies[id(src)] = dst
        stack.append((src, dst))
        return dst

    def convert(item: object) -> object:
        if isinstance(item, str):
            return hash_email_string(item)
        if isinstance(item, (dict, list, tuple)):
            return copy_of(item)
        return item

    root = copy_of(value)
    while stack:
        src, dst = stack.pop()
        if isinstance(src, dict) and isinstance(dst, dict):
            for key, item in src.items():
                dst[key] = convert(item)
        elif isinstance(src, (list, tuple)) and isinstance(dst, list):
            dst.extend(convert(item) for item in src)
    return root


def _scrub_pair(pair: str) -> str:
    name, sep, raw_value = pair.partition("=")
    if not sep:
        # A bare token (`?jane@example.com`) is still a query value for ID-11.
        decoded = unquote_plus(name)
        hashed = hash_email_string(decoded.strip())
        return hashed if hashed != decoded.strip() else pair
    if unquote_plus(name).strip().lower() in REDACTED_QUERY_PARAMS:
        return f"{name}={REDACTED}"
    if "@" in raw_value or "%40" in raw_value.lower():
        decoded = unquote_plus(raw_value)
        hashed = hash_email_string(decoded)
        if hashed != decoded:
            return f"{name}={hashed}"
    return pair


def _truncate(url: str, max_len: int) -> str:
    if len(url) <= max_len:
        return url
    cut = url[:max_len]
    # Do not leave a dangling half percent-escape at the end.
    tail = cut[-2:]
    if tail.endswith("%"):
        cut = cut[:-1]
    elif tail.startswith("%"):
        cut = cut[:-2]
    return cut


_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")


@lru_cache(maxsize=4096)
def _scrub(url: str, max_len: int) -> str | None:
    url = _CONTROL_RE.sub("", url).strip()
    if not url:
        return None
    url = url.split("#", 1)[0]
    base, qmark, query = url.partition("?")
    scheme_end = base.find("://")
    if scheme_end >= 0:
        # ID-12 spirit: credentials in the userinfo are as sensitive as a `password` parameter.
        authority_start = scheme_end + 3
        path_start = base.find("/", authority_start)
        authority = base[authority_start:] if path_start < 0 else base[authority_start:path_start]
        if "@" in authority:
            rest = "" if path_start < 0 else base[path_start:]
            base = base[:authority_start] + authority.rsplit("@", 1)[1] + rest
    if qmark:
        query = "&".join(_scrub_pair(pair) if pair else pair for pair in query.split("&"))
        url = f"{base}?{query}"
    else:
        url = base
    return _truncate(url, max_len) if url else None


def scrub_url(url: str | None, max_len: int = 2048) -> str | None:
    """ID-12: stored URLs must not carry secrets, raw addresses or client-only fragments."""
    if not isinstance(url, str) or max_len <= 0:
        return None
    return _scrub(url, max_len)
