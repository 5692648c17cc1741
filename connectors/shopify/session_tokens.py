"""Session tokens of the embedded page (shopify.md SHP-29..SHP-31): App Bridge JWTs, verified with PyJWT.

Only HS256 under the app secret (then the previous one while it rotates) is accepted; `none`, HS512 and
every other algorithm are refused by PyJWT itself. The time claims are checked against the gateway's
injectable clock with PyJWT's own rules and the 10 s leeway (PyJWT reads the wall clock, which replayed
fixtures cannot move), so `exp`, `nbf` and `iat` are required by PyJWT and compared here. The shop, and so
the tenant, comes from `dest` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
import sqlalchemy as sa
from sqlalchemy.orm import Session

from connectors.shopify.envelopes import shop_domain
from connectors.shopify.querysign import secrets_of
from core.storage.models import Installation

__all__ = ["LEEWAY_S", "REQUIRED", "InvalidSessionToken", "SessionClaims", "authenticate", "bearer_token",
           "decode_session_token"]

LEEWAY_S = 10
REQUIRED = ["exp", "nbf", "iat", "iss", "dest", "aud", "sub", "jti", "sid"]


class InvalidSessionToken(Exception):
    """Any SHP-30/SHP-31 failure; answered 401 `{"error": "invalid_session_token"}` whatever the reason."""


@dataclass(frozen=True)
class SessionClaims:
    shop: str  # the validated host of `dest`
    sub: str  # the staff user id (audit rows, SHP-82)
    sid: str
    jti: str
    claims: dict[str, Any]


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <JWT>` header (SHP-29)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _times_ok(claims: dict[str, Any], now: datetime) -> bool:
    """PyJWT's `exp`/`nbf`/`iat` rules with the leeway, at the injectable `now`."""
    at = now.timestamp()
    try:
        exp, nbf, iat = (int(claims[name]) for name in ("exp", "nbf", "iat"))
    except (TypeError, ValueError, OverflowError):
        return False
    return exp > at - LEEWAY_S and nbf <= at + LEEWAY_S and iat <= at + LEEWAY_S


def decode_session_token(token: str, settings: Any, now: datetime) -> SessionClaims:
    """SHP-30 decoding and SHP-31's claim checks, except that an installation exists (see `authenticate`)."""
    if not settings.shopify_api_key:
        raise InvalidSessionToken("the app's client id is not configured")
    claims: dict[str, Any] | None = None
    for secret in secrets_of(settings):
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"], audience=settings.shopify_api_key,
                                leeway=LEEWAY_S, options={"require": REQUIRED, "verify_exp": False,
                                                          "verify_nbf": False, "verify_iat": False})
            break
        except jwt.InvalidSignatureError:
            continue  # signed with another secret: try the previous one
        except jwt.InvalidTokenError as exc:
            raise InvalidSessionToken(type(exc).__name__) from None
    if claims is None:
        raise InvalidSessionToken("signature does not verify under any app secret")
    if not _times_ok(claims, now):
        raise InvalidSessionToken("expired or not yet valid")
    dest = claims.get("dest")
    shop = shop_domain(dest) if isinstance(dest, str) else None
    if shop is None or not isinstance(dest, str) or not dest.lower().startswith("https://"):
        raise InvalidSessionToken("dest is not https://<shop>.myshopify.com")
    iss = claims.get("iss")
    if not isinstance(iss, str) or iss.lower() != f"https://{shop}/admin":
        raise InvalidSessionToken("iss is not the admin of the dest shop")
    if not all(isinstance(claims.get(name), str) and claims[name] for name in ("sub", "sid", "jti")):
        raise InvalidSessionToken("sub, sid and jti must be non-empty strings")
    return SessionClaims(shop=shop, sub=claims["sub"], sid=claims["sid"], jti=claims["jti"], claims=claims)


def authenticate(db: Session, token: str | None, settings: Any, now: datetime) -> tuple[SessionClaims, Installation]:
    """SHP-31 in full: a valid token whose shop has an `active` or `pending_connect` installation."""
    if not token:
        raise InvalidSessionToken("no bearer token")
    claims = decode_session_token(token, settings, now)
    installation = db.scalars(sa.select(Installation).where(Installation.shop_domain == claims.shop)).first()
    if installation is None or installation.status not in ("active", "pending_connect"):
        raise InvalidSessionToken("no installation for the shop")
    return claims, installation
