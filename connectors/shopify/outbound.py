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

from connectors.shopify.envelopes import shop_domain
from core.crypto import cipher
from core.storage.models import Installation

__all__ = ["REFRESH_MARGIN", "TIMEOUT_S", "ShopifyHTTPError", "TokenGrant", "TokenInvalid", "exchange_token",
           "fresh_access_token", "outbound_url", "refresh_token", "request_code_token", "store_grant"]

log = logging.getLogger("mbuzz.shopify")

TIMEOUT_S = 10
REFRESH_MARGIN = timedelta(seconds=300)  # SHP-25: refresh when the token expires within this margin
TOKEN_PATH = "/admin/oauth/access_token"


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
        "requested_token_type": "urn:shopify:params:oauth:token-type:offline-access-token",
        "expiring": "1",
    }, "token exchange")


def request_code_token(settings: Any, shop: str, code: str) -> TokenGrant:
    """SHP-23 step 5: the offline token for an authorization code."""
    return _post_token(settings, shop, {"client_id": settings.shopify_api_key,
                                        "client_secret": settings.shopify_api_secret, "code": code},
                       "authorization code grant")


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


def fresh_access_token(services: Any, installation_id: str) -> str:
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
