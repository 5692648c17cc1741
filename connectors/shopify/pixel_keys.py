"""Publishable pixel keys (shopify.md SHP-13, SHP-27, SHP-70, SHP-84): write-only, one active per installation.

A pixel key is a row of the core `api_keys` table (`kind = pixel`, `installation_id` set), stored as its
SHA-256 like every key. It lives in the shopper's browser, so it can only post pixel events. A new key
revokes the previous one after a grace period (`revoked_at` in the future), so pages still open with the old
settings keep working for a day; an uninstall revokes at once.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.accounts import key_digest
from core.ids import new_id
from core.storage.models import ApiKey, Installation
from core.storage.tenancy import all_tenants

__all__ = ["GRACE", "PIXEL_KEY", "active_pixel_key", "issue_pixel_key", "revoke_pixel_keys"]

PIXEL_KEY = re.compile(r"pk_px_[0-9a-f]{32}")
GRACE = timedelta(hours=24)


def issue_pixel_key(db: Session, installation: Installation, now: datetime,
                    generate: Callable[[], str] = lambda: secrets.token_hex(16)) -> str:
    """A new key for the installation's account and environment; earlier keys expire after `GRACE`."""
    assert installation.account_id is not None, "only a connected installation gets a pixel key"
    revoke_pixel_keys(db, installation.id, now + GRACE)
    plaintext = f"pk_px_{generate()}"
    db.add(ApiKey(account_id=installation.account_id, id=new_id("key", now), environment=installation.environment,
                  kind="pixel", key_digest=key_digest(plaintext), key_prefix=plaintext[:12],
                  name=f"Shopify pixel ({installation.shop_domain})", installation_id=installation.id,
                  created_at=now))
    db.flush()
    return plaintext


def revoke_pixel_keys(db: Session, installation_id: str, at: datetime) -> None:
    """Every pixel key of the installation stops working at `at` (keys already revoked earlier stay so)."""
    db.execute(sa.update(ApiKey).where(
        ApiKey.installation_id == installation_id, ApiKey.kind == "pixel",
        sa.or_(ApiKey.revoked_at.is_(None), ApiKey.revoked_at > at)).values(revoked_at=at),
        execution_options=all_tenants("a shop's pixel keys, by its installation"))


def active_pixel_key(db: Session, token: str, now: datetime) -> ApiKey | None:
    """SHP-70: the key row when `token` is a pixel key not revoked at `now` (or within its grace period)."""
    if PIXEL_KEY.fullmatch(token) is None:
        return None
    key = db.scalars(sa.select(ApiKey).where(ApiKey.key_digest == key_digest(token), ApiKey.kind == "pixel"),
                     execution_options=all_tenants("a pixel key names its tenant (SHP-70)")).first()
    if key is None or (key.revoked_at is not None and key.revoked_at <= now):
        return None
    return key
