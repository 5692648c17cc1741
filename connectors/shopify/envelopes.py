"""The SHP-1 command envelope and the values every Shopify command shares (shopify.md §0)."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

__all__ = ["WEB_PIXEL", "email_hash", "envelope", "gid_tail", "rfc3339", "shop_domain", "shopify_id", "source_time",
           "synthetic_visitor"]

_SHOP = re.compile(r"[a-z0-9][a-z0-9-]*\.myshopify\.com")


def shop_domain(value: str | None) -> str | None:
    """SHP-15: lower-cased, without a leading https:// or a path; None unless it is a myshopify domain."""
    if not value:
        return None
    host = value.strip().lower().removeprefix("https://").split("/", 1)[0]
    return host if _SHOP.fullmatch(host) else None


WEB_PIXEL = "shopify_pixel"  # the source of what the Web Pixel sends (SHP-1); webhooks are "shopify_webhook"


def envelope(kind: str, account_id: str, environment: str, installation_id: str, key: str,
             source: str = "shopify_webhook", **fields: Any) -> dict[str, Any]:
    """A connector command: kind, tenant, source, origin and business key, then the kind's fields (None dropped)."""
    return {"kind": kind, "account_id": account_id, "environment": environment, "source": source,
            "origin": f"shopify:{installation_id}", "idempotency_key": key,
            **{name: value for name, value in fields.items() if value is not None}}


def source_time(value: object) -> datetime | None:
    """A Shopify timestamp (any offset) as an aware UTC datetime; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def rfc3339(moment: datetime) -> str:
    """SHP-2: UTC with `Z`; fractions of a second only when present."""
    text = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def shopify_id(value: object) -> str | None:
    """SHP-2: Shopify numeric ids are carried as strings (order ids exceed 2^53)."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    return text if text and len(text) <= 32 else None


def gid_tail(value: object) -> str | None:
    """`gid://shopify/Order/123` → `123`; a plain id is returned as it is."""
    text = shopify_id(value) if not isinstance(value, str) else value.strip()
    if not text:
        return None
    return text.rsplit("/", 1)[-1] or None


def email_hash(*candidates: object) -> str | None:
    """SHP-3: sha256 of `strip().lower()` of the first non-empty address; the address itself goes no further."""
    for value in candidates:
        if isinstance(value, str) and value.strip():
            return hashlib.sha256(value.strip().lower().encode()).hexdigest()
    return None


def synthetic_visitor(conversion_key: str) -> str:
    """SHP-53: the visitor of a conversion with neither a resolved visitor nor a customer."""
    return hashlib.sha256(f"anon:{conversion_key}".encode()).hexdigest()
