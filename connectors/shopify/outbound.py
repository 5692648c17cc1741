"""Shopify's token endpoint (shopify.md SHP-21, SHP-23 step 5, SHP-25): exchange, code grant and refresh.

HTTP is done with `requests` and a 10 s timeout, never with the ShopifyAPI package. URLs are built only from
shop domains that pass SHP-15, and through `MBUZZ_SHOPIFY_OUTBOUND_BASE` when it is set (tests point every
outbound call at a local fake Shopify). Tokens exist in plain text only in memory: they are stored
encrypted, and no log line, exception message or `repr` contains one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
import sqlalchemy as sa

from connectors.shopify.envelopes import shop_domain
from core.crypto import cipher
from core.storage.models import Installation
from edge.services import AppServices

__all__ = ["REFRESH_MARGIN", "TIMEOUT_S", "ShopifyHTTPError", "TokenGrant", "TokenInvalid", "TokenMigration",
           "exchange_token", "fresh_access_token", "holds_non_expiring_token", "migrate_installation_token",
           "migrate_non_expiring_tokens", "migrate_offline_token", "outbound_url", "refresh_token",
           "request_code_token", "store_grant"]

log = logging.getLogger("mbuzz.shopify")

TIMEOUT_S = 10
REFRESH_MARGIN = timedelta(seconds=300)  # SHP-25: refresh when the token expires within this margin
TOKEN_PATH = "/admin/oauth/access_token"
OFFLINE_TOKEN_TYPE = "urn:shopify:params:oauth:token-type:offline-access-token"


class ShopifyHTTPError(Exception):
    """A failed call to Shopify; the message names the endpoint and status, never a token or a body."""

    def __init__(self, what: str, status: int | None, code: str = "") -> None:
        self.status = status
        self.code = code
        super().__init__(f"{what}: " + (f"HTTP {status}" if status is not None else "no answer")
                         + (f" ({code})" if code else ""))


class TokenInvalid(Exception):
    """SHP-25: the installation's token cannot be used or refreshed; the next `GET /shopify/app` exchanges one."""


@dataclass(frozen=True)
class TokenGrant:
    """What the token endpoint answered; the tokens are left out of `repr` so they never reach a log."""

    access_token: str = field(repr=False)
    scope: str | None = None
    expires_in: int | None = None
    refresh_token: str | None = field(default=None, repr=False)
    refresh_token_expires_in: int | None = None


def outbound_url(settings: Any, shop: str, path: str) -> str:
    """`https://{shop}{path}`, or `{base}/{shop}{path}` under `shopify_outbound_base`; only for valid shops."""
    valid = shop_domain(shop)
    if valid is None or valid != shop:
        raise ValueError("shop: not a validated myshopify.com domain; no outbound URL is built from it")
    base = getattr(settings, "shopify_outbound_base", None)
    return f"{base.rstrip('/')}/{valid}{path}" if base else f"https://{valid}{path}"


def _post_token(settings: Any, shop: str, payload: dict[str, str], what: str) -> TokenGrant:
    try:
        resp = requests.post(outbound_url(settings, shop, TOKEN_PATH), json=payload, timeout=TIMEOUT_S,
                             headers={"Accept": "application/json"}, allow_redirects=False)
    except requests.RequestException as exc:
        raise ShopifyHTTPError(what, None, type(exc).__name__) from None  # the request held the secret
    if resp.status_code != 200:
        code = ""
        try:
            body = resp.json()
            if isinstance(body, dict) and isinstance(body.get("error"), str):
                code = body["error"][:64]  # an OAuth error code such as invalid_grant, never a token
        except ValueError:
            pass
        raise ShopifyHTTPError(what, resp.status_code, code)
    try:
        body = resp.json()
    except ValueError:
        raise ShopifyHTTPError(what, resp.status_code, "not_json") from None
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ShopifyHTTPError(what, resp.status_code, "no_access_token")

    def seconds(name: str) -> int | None:
        value = body.get(name)
        return int(value) if isinstance(value, int | str) and str(value).isdigit() else None

    refresh = body.get("refresh_token")
    return TokenGrant(access_token=token, scope=body.get("scope") if isinstance(body.get("scope"), str) else None,
                      expires_in=seconds("expires_in"),
                      refresh_token=refresh if isinstance(refresh, str) and refresh else None,
                      refresh_token_expires_in=seconds("refresh_token_expires_in"))


def exchange_token(settings: Any, shop: str, id_token: str) -> TokenGrant:
    """SHP-21: an expiring offline token for the shop in exchange for the embedded page's `id_token`."""
    return _post_token(settings, shop, {
        "client_id": settings.shopify_api_key,
        "client_secret": settings.shopify_api_secret,
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": id_token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        "requested_token_type": OFFLINE_TOKEN_TYPE,
        "expiring": "1",
    }, "token exchange")


def request_code_token(settings: Any, shop: str, code: str) -> TokenGrant:
    """SHP-23 step 5: an expiring offline token for an authorization code (required of public apps from
    2027-01-01; its answer carries `expires_in` and a refresh token, as token exchange's does)."""
    return _post_token(settings, shop, {"client_id": settings.shopify_api_key,
                                        "client_secret": settings.shopify_api_secret, "code": code,
                                        "expiring": "1"},
                       "authorization code grant")


def migrate_offline_token(settings: Any, shop: str, token: str) -> TokenGrant:
    """An expiring offline token (with its refresh token) in exchange for a non-expiring one, without a user.

    Shopify invalidates the old token once it answers; a lost answer is recovered by sending the same old token
    again within 7 days, which returns the same pair.
    """
    return _post_token(settings, shop, {
        "client_id": settings.shopify_api_key,
        "client_secret": settings.shopify_api_secret,
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": token,
        "subject_token_type": OFFLINE_TOKEN_TYPE,
        "requested_token_type": OFFLINE_TOKEN_TYPE,
        "expiring": "1",
    }, "token migration")


def refresh_token(settings: Any, shop: str, token: str) -> TokenGrant:
    """SHP-25: a new access (and refresh) token for the stored refresh token."""
    return _post_token(settings, shop, {"client_id": settings.shopify_api_key,
                                        "client_secret": settings.shopify_api_secret,
                                        "grant_type": "refresh_token", "refresh_token": token}, "token refresh")


def store_grant(installation: Installation, grant: TokenGrant, settings: Any, now: datetime) -> None:
    """Encrypt and store the grant (SHP-7, SHP-25); a grant without expiry clears the expiry columns."""
    box = cipher(settings.encryption_keys, settings.secret_key)
    installation.access_token_enc = box.encrypt(grant.access_token.encode()).decode()
    installation.token_expires_at = now + timedelta(seconds=grant.expires_in) if grant.expires_in else None
    installation.refresh_token_enc = (box.encrypt(grant.refresh_token.encode()).decode()
                                      if grant.refresh_token else None)
    installation.refresh_expires_at = (now + timedelta(seconds=grant.refresh_token_expires_in)
                                       if grant.refresh_token and grant.refresh_token_expires_in else None)
    installation.token_status = "valid"
    if grant.scope is not None:
        installation.scopes = grant.scope
    installation.updated_at = now


def _needs_refresh(installation: Installation, now: datetime) -> bool:
    return installation.token_expires_at is not None and installation.token_expires_at - now <= REFRESH_MARGIN


def fresh_access_token(services: AppServices, installation_id: str) -> str:
    """The installation's access token, refreshed first when it expires within 300 s (SHP-25).

    The refresh runs under a row lock on the installation, so concurrent callers refresh once (Shopify
    rotates the refresh token on every use) and the others read the new token. A 400/401 answer marks the
    token `invalid` and raises `TokenInvalid`; other failures raise `ShopifyHTTPError` and change nothing.
    """
    settings = services.settings
    box = cipher(settings.encryption_keys, settings.secret_key)
    now = services.now()
    with services.sessions() as db:
        installation = db.get(Installation, installation_id)
        if installation is None or installation.access_token_enc is None or installation.token_status != "valid":
            raise TokenInvalid(f"installation {installation_id}: no usable access token")
        if not _needs_refresh(installation, now):
            return box.decrypt(installation.access_token_enc.encode()).decode()
    invalid = False
    with services.sessions.begin() as db:
        installation = db.get(Installation, installation_id, with_for_update=True)
        if installation is None or installation.access_token_enc is None or installation.token_status != "valid":
            raise TokenInvalid(f"installation {installation_id}: no usable access token")
        if not _needs_refresh(installation, now):  # another caller refreshed while we waited for the lock
            return box.decrypt(installation.access_token_enc.encode()).decode()
        expired_refresh = installation.refresh_expires_at is not None and installation.refresh_expires_at <= now
        if installation.refresh_token_enc is None or expired_refresh:
            if installation.token_expires_at is not None and installation.token_expires_at > now:
                return box.decrypt(installation.access_token_enc.encode()).decode()  # still valid a little
            installation.token_status, installation.updated_at = "invalid", now
            invalid = True
        else:
            stored = box.decrypt(installation.refresh_token_enc.encode()).decode()
            try:
                grant = refresh_token(settings, installation.shop_domain, stored)
            except ShopifyHTTPError as exc:
                if exc.status not in (400, 401):
                    raise  # transient: the row is unchanged and the caller retries later
                log.warning("token refresh refused for installation %s (%s); token marked invalid",
                            installation_id, exc)
                installation.token_status, installation.updated_at = "invalid", now
                invalid = True
            else:
                store_grant(installation, grant, settings, now)
                return grant.access_token
    assert invalid
    raise TokenInvalid(f"installation {installation_id}: the token could not be refreshed")


# --- moving non-expiring tokens to expiring ones (SHP-23, SHP-25) ------------------------------------------------

@dataclass(frozen=True)
class TokenMigration:
    """The outcome of moving one installation's non-expiring token to an expiring one."""

    installation_id: str
    shop: str
    migrated: bool
    error: str | None = None  # why not: the Shopify error (endpoint, status, OAuth code), never a token


def holds_non_expiring_token(installation: Installation) -> bool:
    """An app installation whose usable token has no expiry: issued before `expiring=1` was asked for."""
    return (installation.mode == "app" and installation.status != "uninstalled"
            and installation.access_token_enc is not None and installation.token_status == "valid"
            and installation.token_expires_at is None)


def migrate_installation_token(services: AppServices, installation_id: str) -> TokenMigration | None:
    """Moves one installation to an expiring token under a row lock (None when it holds none to move).

    A refused or failed exchange changes nothing: the old token keeps working until Shopify stops accepting it,
    and the next embedded load exchanges the page's session token instead (SHP-20).
    """
    settings = services.settings
    box = cipher(settings.encryption_keys, settings.secret_key)
    with services.sessions.begin() as db:
        installation = db.get(Installation, installation_id, with_for_update=True)
        if installation is None or not holds_non_expiring_token(installation):
            return None
        shop = installation.shop_domain
        assert installation.access_token_enc is not None
        old = box.decrypt(installation.access_token_enc.encode()).decode()
        try:
            grant = migrate_offline_token(settings, shop, old)
        except ShopifyHTTPError as exc:
            log.warning("moving installation %s to an expiring token failed: %s", installation_id, exc)
            return TokenMigration(installation_id, shop, False, str(exc))
        if grant.expires_in is None:
            return TokenMigration(installation_id, shop, False, "token migration: the answer has no expiry")
        store_grant(installation, grant, settings, services.now())
    return TokenMigration(installation_id, shop, True)


def migrate_non_expiring_tokens(services: AppServices, shop: str | None = None) -> list[TokenMigration]:
    """Every app installation (or the one of `shop`) that still holds a non-expiring token, moved one by one."""
    with services.sessions() as db:
        query = sa.select(Installation.id).where(
            Installation.mode == "app", Installation.status != "uninstalled",
            Installation.access_token_enc.is_not(None), Installation.token_status == "valid",
            Installation.token_expires_at.is_(None)).order_by(Installation.shop_domain)
        if shop is not None:
            query = query.where(Installation.shop_domain == shop)
        targets = list(db.scalars(query))
    results = [migrate_installation_token(services, installation_id) for installation_id in targets]
    return [r for r in results if r is not None]
