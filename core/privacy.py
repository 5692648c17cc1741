"""The one scrubbing rule for values that reach storage (quality.md Q-45; sessions.md ID-11, ID-12, FP-1).

No raw e-mail address and no raw IP address may be stored anywhere: not in a column, not in a JSON document,
not in a Redis key or value. Every command is scrubbed when it is built (:mod:`core.commands`), so the edge
(REST API, sGTM, Shopify), the Redis stream, the idempotency keys and every processor see the scrubbed values
only. Two field kinds, two rules (docs/privacy.md Q-45-D1):

- **Free text** (properties, traits, UTM values, names such as ``event_type``, user agents): a value that as a
  whole is an e-mail becomes ``sha256:`` + the hex hash of its normalized form (ID-11, unchanged); an e-mail
  inside a longer text is replaced in place the same way; an IPv4 or IPv6 address inside the text is masked as
  FP-1 masks ``ip`` (IPv4 /24, IPv6 /48). URLs get the same in-place rule (never the whole-value one, so a URL
  stays a URL), with an ``%40``-encoded at-sign counted and userinfo dropped.
- **Identifiers** (user ids, visitor and session ids, message ids and idempotency keys, transaction ids): one
  that contains an e-mail or an IP address anywhere is replaced as a whole by ``sha256:`` + the hex hash of the
  identifier exactly as sent. The hash is deterministic and unkeyed, so the same user id names the same user on
  every request and in every process, a replayed message id is still a duplicate, and two ids that differ
  (even only by case) stay different.

Every function is idempotent (its output contains nothing it would change again), so a command scrubbed at the
edge and rebuilt by a worker from the stream comes out the same.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Final, overload

from core.channels.scrub import HASH_PREFIX, hash_email_string

__all__ = [
    "HASH_PREFIX",
    "has_personal_data",
    "scrub_envelope",
    "scrub_identifier",
    "scrub_json",
    "scrub_name",
    "scrub_text",
    "scrub_url",
]

NAME_MAX: Final = 255  # event_type, conversion_type, funnel: the column width (api.md API-36)

# An address inside other text: a conservative local part (no URL delimiters such as `=`, `&`, `/`, `?`, `%`),
# an at-sign raw or percent-encoded, and a domain whose last label is letters.
_EMBEDDED_EMAIL: Final = re.compile(
    r"(?<![\w!#$'*+^`{|}~.-])[\w!#$'*+^`{|}~.-]+(?:@|%40)(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}",
    re.IGNORECASE)
# Anything an address could hide in (the loose pattern of ID-6), for identifiers; anchored at the start of a run
# and with no `%` in the domain, so a long value is searched in linear time.
_ANY_EMAIL: Final = re.compile(r"(?<![^@\s])[^@\s]+(?:@|%40)[^@\s%]+\.[^@\s]+", re.IGNORECASE)
_IPV4: Final = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)")
_IPV6: Final = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4})(?![0-9A-Fa-f]|\.\d|:[0-9A-Fa-f:])")
_USERINFO: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@]*@")
_V4_MASK: Final = (2**32 - 1) ^ (2**8 - 1)
_V6_MASK: Final = (2**128 - 1) ^ (2**80 - 1)


def _email_hash(match: re.Match[str]) -> str:
    address = re.sub("%40", "@", match.group(0), flags=re.IGNORECASE).strip().lower()
    return HASH_PREFIX + hashlib.sha256(address.encode("utf-8")).hexdigest()


def _masked_v4(text: str) -> str | None:
    try:
        address = IPv4Address(text)
    except ValueError:
        return None
    return str(IPv4Address(int(address) & _V4_MASK))


def _masked_v6(text: str) -> str | None:
    try:
        address = IPv6Address(text)
    except ValueError:
        if text.endswith(":") and not text.endswith("::"):  # "from 2001:db8::1: blocked" — the colon is prose
            inner = _masked_v6(text[:-1])
            return None if inner is None else inner + ":"
        return None
    mapped = address.ipv4_mapped
    if mapped is not None:  # FP-1: IPv4-mapped IPv6 is treated as IPv4
        return str(IPv4Address(int(mapped) & _V4_MASK))
    return str(IPv6Address(int(address) & _V6_MASK))


def _mask_match(masker: Callable[[str], str | None]) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        masked = masker(match.group(0))
        return match.group(0) if masked is None else masked

    return replace


def _mask_ips(text: str) -> str:
    if "." in text:
        text = _IPV4.sub(_mask_match(_masked_v4), text)
    if text.count(":") >= 2:
        text = _IPV6.sub(_mask_match(_masked_v6), text)
    return text


def _has_ip(text: str) -> bool:
    if "." in text and any(_masked_v4(m.group(0)) is not None for m in _IPV4.finditer(text)):
        return True
    return text.count(":") >= 2 and any(_masked_v6(m.group(0)) is not None for m in _IPV6.finditer(text))


def _might_hold_email(text: str) -> bool:
    return "@" in text or "%40" in text.lower()


def _passes(text: str) -> int:
    """Each pass hashes at least one address away, and masking never makes a new one: this many always settle."""
    return text.count("@") + text.lower().count("%40") + 2


def _in_place(text: str) -> str:
    """E-mails hashed and IPs masked where they stand, until nothing is left to change."""
    for _ in range(_passes(text)):
        before = text
        if _might_hold_email(text):
            text = _EMBEDDED_EMAIL.sub(_email_hash, text)
        text = _mask_ips(text)
        if text == before:
            break
    return text


@lru_cache(maxsize=8192)
def scrub_text(value: str) -> str:
    """Free text: ID-11 for a value that is an address as a whole, else addresses and IPs inside it (and ID-11
    again should what is left be an address as a whole)."""
    for _ in range(_passes(value)):
        whole = hash_email_string(value)
        if whole != value:
            return whole
        scrubbed = _in_place(value)
        if scrubbed == value:
            break
        value = scrubbed
    return value


@overload
def scrub_name(value: str) -> str: ...
@overload
def scrub_name(value: None) -> None: ...
def scrub_name(value: str | None) -> str | None:
    """``event_type``, ``conversion_type``, ``funnel``: free text, kept within the column (a hash is longer
    than the shortest address it replaces)."""
    if value is None:
        return None
    return scrub_text(value)[:NAME_MAX]


@lru_cache(maxsize=8192)
def _scrub_url(value: str) -> str:
    return _in_place(_USERINFO.sub(r"\1", value, count=1))


@overload
def scrub_url(value: str) -> str: ...
@overload
def scrub_url(value: None) -> None: ...
def scrub_url(value: str | None) -> str | None:
    """A URL: userinfo dropped, addresses (raw or ``%40``-encoded) hashed and IPs masked where they stand."""
    if value is None:
        return None
    return _scrub_url(value)


def has_personal_data(value: str) -> bool:
    """True when ``value`` holds an e-mail address (raw or ``%40``-encoded) or a valid IP address."""
    if _might_hold_email(value) and _ANY_EMAIL.search(value) is not None:
        return True
    return _has_ip(value)


@lru_cache(maxsize=8192)
def _scrub_identifier(value: str) -> str:
    if not has_personal_data(value):
        return value
    return HASH_PREFIX + hashlib.sha256(value.encode("utf-8")).hexdigest()


@overload
def scrub_identifier(value: str) -> str: ...
@overload
def scrub_identifier(value: None) -> None: ...
def scrub_identifier(value: str | None) -> str | None:
    """An identifier with an e-mail or IP in it, hashed exactly as sent (see the module docstring)."""
    if value is None:
        return None
    return _scrub_identifier(value)


def scrub_json(value: Any) -> Any:
    """Every string of a JSON-like value, at any depth, through :func:`scrub_text`; keys are left alone (ID-11).

    Iterative, so deeply nested input cannot raise RecursionError; tuples come back as lists.
    """
    if isinstance(value, str):
        return scrub_text(value)
    if not isinstance(value, dict | list | tuple):
        return value
    root: dict[Any, Any] | list[Any] = {} if isinstance(value, dict) else []
    stack: list[tuple[Any, dict[Any, Any] | list[Any]]] = [(value, root)]
    while stack:
        src, dst = stack.pop()
        items = src.items() if isinstance(src, dict) else enumerate(src)
        for key, item in items:
            if isinstance(item, str):
                out: Any = scrub_text(item)
            elif isinstance(item, dict | list | tuple):
                out = {} if isinstance(item, dict) else []
                stack.append((item, out))
            else:
                out = item
            if isinstance(dst, dict):
                dst[key] = out
            else:
                dst.append(out)
    return root


# Connector envelopes (shopify.md SHP-1) held as data, e.g. an sGTM purchase waiting for its Shopify order.
ENVELOPE_IDENTIFIERS: Final = frozenset({
    "idempotency_key", "conversion_key", "user_id", "visitor_id", "transaction_id", "ga_client_id",
})
ENVELOPE_URLS: Final = frozenset({"url", "referrer"})
ENVELOPE_NAMES: Final = frozenset({"event_type", "conversion_type", "funnel"})


def scrub_envelope(envelope: dict[str, Any]) -> dict[str, Any]:
    """A connector envelope by field kind; fields it does not know are free text."""
    out: dict[str, Any] = {}
    for key, value in envelope.items():
        if isinstance(value, str) and key in ENVELOPE_IDENTIFIERS:
            out[key] = scrub_identifier(value)
        elif isinstance(value, str) and key in ENVELOPE_URLS:
            out[key] = scrub_url(value)
        elif isinstance(value, str) and key in ENVELOPE_NAMES:
            out[key] = scrub_name(value)
        else:
            out[key] = scrub_json(value)
    return out
