"""Browser routes of the app install (shopify.md SHP-20..SHP-23, SHP-80): `/shopify/app`, `/shopify/auth`,
`/shopify/auth/callback`.

`GET /shopify/app` is the App URL inside the Shopify admin: it verifies the signed query and the `id_token`,
performs token exchange when the shop has no usable token (managed install, SHP-21) or still holds a
non-expiring one (public apps must use expiring offline tokens from 2027-01-01), and renders the embedded page.
`GET /shopify/auth` and its callback are the authorization-code grant for installs started outside the admin
(asking for an expiring token too); the callback runs SHP-23's checks in its exact order, each with its own
status. The OAuth state is single use: its nonce is stored only as a SHA-256 and travels in a cookie signed with
the Flask secret, so a callback must come back to the browser that started it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlencode

import sqlalchemy as sa
from flask import Blueprint, current_app, redirect, render_template, request
from itsdangerous import BadSignature, Signer
from werkzeug.wrappers import Response

from connectors.shopify.config import shopify_settings
from connectors.shopify.embedded import METHODS
from connectors.shopify.envelopes import shop_domain
from connectors.shopify.install import generators, missing_scopes, schedule_post_install, upsert_installation
from connectors.shopify.models import ShopifyOAuthState
from connectors.shopify.outbound import (
    ShopifyHTTPError,
    exchange_token,
    holds_non_expiring_token,
    request_code_token,
)
from connectors.shopify.querysign import decoded_host, fresh, query_hmac_valid, secrets_of
from connectors.shopify.session_tokens import InvalidSessionToken, decode_session_token
from core.storage.models import Installation
from edge.services import AppServices, app_services

__all__ = ["COOKIE", "bp", "frame_headers", "token_usable"]

log = logging.getLogger("mbuzz.shopify")

bp = Blueprint("shopify_oauth", __name__, url_prefix="/shopify")

COOKIE = "mbuzz_shopify_oauth"
STATE_TTL = timedelta(seconds=600)
CALLBACK_MAX_AGE_S = 300  # SHP-18
APP_MAX_AGE_S = 3600


def _services() -> AppServices:
    return app_services()


def _raw_query() -> str:
    return request.query_string.decode("utf-8", errors="replace")


def frame_headers(shop: str | None) -> dict[str, str]:
    """SHP-80: the page may be framed by the shop's admin only; no X-Frame-Options (it would forbid that)."""
    ancestors = f"https://{shop} https://admin.shopify.com" if shop else "https://admin.shopify.com"
    return {"Content-Security-Policy": f"frame-ancestors {ancestors};", "Cache-Control": "no-store",
            "Referrer-Policy": "strict-origin-when-cross-origin", "X-Content-Type-Options": "nosniff"}


def _page_error(status: int, message: str, shop: str | None = None) -> Response:
    """A small HTML error page for browser routes (the message is escaped by Jinja)."""
    body = render_template("shopify/error.html", status=status, message=message)
    return Response(body, status=status, mimetype="text/html", headers=frame_headers(shop))


def _signer() -> Signer:
    return Signer(current_app.secret_key or "", salt=COOKIE)


def token_usable(installation: Installation, now: datetime) -> bool:
    """Whether the stored token can still make Admin calls (itself, or through its refresh token)."""
    if installation.access_token_enc is None or installation.token_status != "valid":
        return False
    if installation.token_expires_at is None or installation.token_expires_at > now:
        return True
    return installation.refresh_token_enc is not None and (
        installation.refresh_expires_at is None or installation.refresh_expires_at > now)


@bp.route("/auth", methods=["GET"])
def begin() -> Response:
    """SHP-22: store a state nonce and send the browser to Shopify's consent screen."""
    services = _services()
    settings = shopify_settings(services)
    if "hmac" in request.args and not query_hmac_valid(_raw_query(), secrets_of(settings)):
        return _page_error(401, "The request signature does not verify.")
    shop = shop_domain(request.args.get("shop"))
    if shop is None:
        return _page_error(400, "The shop parameter must be a *.myshopify.com domain.")
    now = services.now()
    nonce = generators(services).nonce()
    with services.sessions.begin() as db:
        db.add(ShopifyOAuthState(nonce_sha256=hashlib.sha256(nonce.encode()).hexdigest(), shop_domain=shop,
                                 expires_at=now + STATE_TTL, created_at=now))
    query = urlencode({"client_id": settings.shopify_api_key, "scope": settings.shopify_scopes,
                       "redirect_uri": f"{services.settings.public_url.rstrip('/')}/shopify/auth/callback",
                       "state": nonce})
    resp = redirect(f"https://{shop}/admin/oauth/authorize?{query}", 302)
    resp.set_cookie(COOKIE, _signer().sign(nonce).decode(), max_age=int(STATE_TTL.total_seconds()),
                    path="/shopify/auth", httponly=True, secure=services.settings.public_url.startswith("https://"),
                    samesite="Lax")
    return resp


def _consume_state(services: AppServices, shop: str, state: str | None, now: datetime) -> bool:
    """SHP-23 (3): the state equals the signed cookie and an unused, unexpired row of that shop; mark it used."""
    try:
        nonce = _signer().unsign(request.cookies.get(COOKIE, "")).decode()
    except BadSignature:
        return False
    if not state or not hmac.compare_digest(state.encode(), nonce.encode()):
        return False
    with services.sessions.begin() as db:
        marked = db.execute(sa.update(ShopifyOAuthState).where(
            ShopifyOAuthState.nonce_sha256 == hashlib.sha256(state.encode()).hexdigest(),
            ShopifyOAuthState.shop_domain == shop, ShopifyOAuthState.used_at.is_(None),
            ShopifyOAuthState.expires_at > now,
        ).values(used_at=now))
        return bool(cast(sa.CursorResult[Any], marked).rowcount == 1)


@bp.route("/auth/callback", methods=["GET"])
def callback() -> Response:
    """SHP-23: the checks in order (HMAC 401, shop 400, state 401, timestamp 401, grant 502, scopes 400)."""
    services = _services()
    settings = shopify_settings(services)
    now = services.now()
    if not query_hmac_valid(_raw_query(), secrets_of(settings)):
        return _page_error(401, "The request signature does not verify.")
    shop = shop_domain(request.args.get("shop"))
    if shop is None:
        return _page_error(400, "The shop parameter must be a *.myshopify.com domain.")
    if not _consume_state(services, shop, request.args.get("state"), now):
        return _page_error(401, "This install link has expired or was opened in another browser. Start again.")
    if not fresh(request.args.get("timestamp"), now, CALLBACK_MAX_AGE_S):
        return _page_error(401, "The request is too old. Start the install again.")
    code = request.args.get("code")
    if not code:
        return _page_error(400, "The callback has no authorization code.")
    try:
        grant = request_code_token(settings, shop, code)
    except ShopifyHTTPError as exc:
        log.warning("authorization code grant for %s failed: %s", shop, exc)
        return _page_error(502, "Shopify did not issue an access token. Try installing again.")
    missing = missing_scopes(settings.shopify_scopes, grant.scope)
    if missing:
        return _page_error(400, "Shopify did not grant these permissions: " + ", ".join(missing))
    installation_id, connected = upsert_installation(services, shop, grant)  # SHP-23 (7)
    schedule_post_install(services, installation_id, connected)
    host = decoded_host(request.args.get("host"))
    target = f"https://{host}/apps/{settings.shopify_api_key}" if host else \
        f"https://{shop}/admin/apps/{settings.shopify_api_key}"
    resp = redirect(target, 302)
    resp.delete_cookie(COOKIE, path="/shopify/auth", secure=services.settings.public_url.startswith("https://"),
                       httponly=True, samesite="Lax")
    return resp


@bp.route("/app", methods=["GET"])
def app_page() -> Response:
    """SHP-20: verify, install or reactivate with token exchange when needed, then render the page (SHP-80)."""
    services = _services()
    settings = shopify_settings(services)
    now = services.now()
    shop = shop_domain(request.args.get("shop"))
    if shop is None:
        return _page_error(400, "The shop parameter must be a *.myshopify.com domain.")
    id_token = request.args.get("id_token")
    if not id_token and request.args.get("embedded") != "1":
        return redirect(f"/shopify/auth?{urlencode({'shop': shop})}", 302)
    if not query_hmac_valid(_raw_query(), secrets_of(settings)) or \
            not fresh(request.args.get("timestamp"), now, APP_MAX_AGE_S):
        return _page_error(401, "The request signature does not verify or is too old.", shop)
    try:
        if not id_token:
            raise InvalidSessionToken("no id_token")
        claims = decode_session_token(id_token, settings, now)
    except InvalidSessionToken:
        return _page_error(401, "The session token is not valid. Reload the app from the Shopify admin.", shop)
    if claims.shop != shop:
        return _page_error(401, "The session token belongs to another shop.", shop)
    with services.sessions() as db:
        installation = db.scalars(sa.select(Installation).where(Installation.shop_domain == shop)).first()
        needs_token = installation is None or installation.status == "uninstalled" or \
            not token_usable(installation, now) or holds_non_expiring_token(installation)  # moved to expiring
    if needs_token:
        try:
            grant = exchange_token(settings, shop, id_token)
        except ShopifyHTTPError as exc:
            log.warning("token exchange for %s failed: %s", shop, exc)
            return _page_error(502, "Shopify did not issue an access token. Reload the app to try again.", shop)
        installation_id, connected = upsert_installation(services, shop, grant)
        schedule_post_install(services, installation_id, connected)
    with services.sessions() as db:
        installation = db.scalars(sa.select(Installation).where(Installation.shop_domain == shop)).first()
        shop_name = installation.shop_name if installation is not None else None
        pending = installation is None or installation.status == "pending_connect"
    body = render_template("shopify/app.html", api_key=settings.shopify_api_key, shop=shop,
                           shop_name=shop_name or shop, pending=pending, methods=list(METHODS))
    return Response(body, status=200, mimetype="text/html", headers=frame_headers(shop))
