"""Signed Shopify query strings and hosts (shopify.md SHP-16, SHP-17, SHP-18; body HMAC of SHP-33).

Shopify signs the query strings of the App URL and the OAuth callback with the app secret. The message is
rebuilt from the raw query string exactly as SHP-17 describes (decode, drop `hmac`/`signature`, sort, escape
delimiters, join), so a parameter cannot be smuggled by re-encoding it. Every candidate secret is compared in
constant time. The webhook body signature lives here too so the two HMAC rules sit side by side and F13e's
known answers cover both.

A signature arrives from the client as text: werkzeug decodes header bytes as latin-1 and percent-decoded query
values as UTF-8, so any code point can reach the comparison. `hmac.compare_digest` raises TypeError for a
non-ASCII `str`, so both sides are compared as bytes (UTF-8; `surrogatepass` so no text can fail to encode): a
hostile signature is then just a mismatch, never an error (issue 14).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from datetime import datetime
from urllib.parse import parse_qsl

__all__ = ["body_hmac_valid", "canonical_query", "decoded_host", "digest_equal", "fresh", "query_hmac_valid",
           "secrets_of"]

_HOST = (re.compile(r"admin\.shopify\.com/store/[a-z0-9][a-z0-9-]*"),
         re.compile(r"[a-z0-9][a-z0-9-]*\.myshopify\.com/admin"))


HTTP_SPACE = " \t"  # the only whitespace around a field value (RFC 9110 OWS); `str.strip()` would also take
# \x0b, \x1c-\x1f, \x85 and \xa0, which are part of the value: a right signature followed by them is junk


def digest_equal(expected: str, given: str) -> bool:
    """`hmac.compare_digest` on the UTF-8 bytes of both: constant time, and any text compares (issue 14)."""
    return hmac.compare_digest(expected.encode("utf-8", "surrogatepass"), given.encode("utf-8", "surrogatepass"))


class DuplicateParameter(ValueError):
    """A plain (non-`[]`) parameter given twice: the signed value and the value used could differ."""


def secrets_of(settings: object) -> list[str]:
    """The app secret, then the previous one while it rotates (SHP-6); empty ones are skipped."""
    return [s for s in (getattr(settings, "shopify_api_secret", None),
                        getattr(settings, "shopify_api_secret_previous", None)) if s]


def canonical_query(raw_query: str) -> str:
    """SHP-17's message: decoded pairs without `hmac`/`signature`, sorted by key, delimiters escaped.

    A repeated `name[]` becomes key `name` with a JSON-style list value (`["a", "b"]`); a repeated plain key
    raises `DuplicateParameter` (Shopify never sends one, and accepting it would let the signed value differ
    from the value the handler reads).
    """
    values: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        if key in ("hmac", "signature"):
            continue
        if key.endswith("[]"):
            lists.setdefault(key[:-2], []).append(value)
        elif key in values:
            raise DuplicateParameter(key)
        else:
            values[key] = value
    for key, items in lists.items():
        if key in values:
            raise DuplicateParameter(key)
        values[key] = json.dumps(items, ensure_ascii=False)  # `["a", "b"]`: JSON with ", " separators

    def escape_key(text: str) -> str:
        return text.replace("%", "%25").replace("&", "%26").replace("=", "%3D")

    def escape_value(text: str) -> str:
        return text.replace("%", "%25").replace("&", "%26")

    return "&".join(f"{escape_key(k)}={escape_value(values[k])}" for k in sorted(values))


def query_hmac_valid(raw_query: str, secrets: Iterable[str]) -> bool:
    """SHP-17: the query's `hmac` equals the hex HMAC-SHA256 of the canonical message under one of `secrets`."""
    given = [v for k, v in parse_qsl(raw_query, keep_blank_values=True) if k == "hmac"]
    if len(given) != 1 or not given[0]:
        return False
    try:
        message = canonical_query(raw_query).encode()
    except DuplicateParameter:
        return False
    text = given[0].strip(HTTP_SPACE)
    text = text.lower() if text.isascii() else text  # hex is case-free; only ASCII may be folded
    matched = False
    for secret in secrets:  # every candidate is compared, in constant time
        digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
        matched |= digest_equal(digest, text)
    return matched


def body_hmac_valid(raw: bytes, header: str, secrets: Iterable[str]) -> bool:
    """SHP-33: the base64 (standard alphabet) HMAC-SHA256 of the raw body equals the header, in constant time."""
    matched = False
    for secret in secrets:  # every candidate is compared, in constant time
        digest = base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()
        matched |= digest_equal(digest, header.strip(HTTP_SPACE))
    return matched


def decoded_host(value: str | None) -> str | None:
    """SHP-16: the base64-decoded `host` when it is an admin host of the allowed forms; None otherwise."""
    if not value:
        return None
    text = value.strip()
    padded = text + "=" * (-len(text) % 4)
    try:  # standard alphabet (what Shopify sends), else URL-safe; anything else is not a host
        raw = base64.b64decode(padded, validate=True) if re.fullmatch(r"[A-Za-z0-9+/]*=*", padded) else \
            base64.urlsafe_b64decode(padded)
        decoded = raw.decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded if any(p.fullmatch(decoded) for p in _HOST) else None


MAX_TIMESTAMP_DIGITS = 15  # Unix seconds stay under 12 digits for 30,000 years; longer is not a timestamp


def fresh(timestamp: str | None, now: datetime, max_age_s: int, max_ahead_s: int = 60) -> bool:
    """SHP-18: `timestamp` (Unix seconds) is at most `max_age_s` old and at most `max_ahead_s` ahead of `now`.

    Only ASCII digits count (`"²".isdigit()` is true but `int("²")` fails) and at most 15 of them (a longer
    number overflows the float subtraction or Python's int-parsing limit): anything else is not fresh.
    """
    text = (timestamp or "").strip()
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_TIMESTAMP_DIGITS):
        return False
    age = now.timestamp() - int(text)
    return -max_ahead_s <= age <= max_age_s
