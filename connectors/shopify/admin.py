"""The one Admin GraphQL wrapper (shopify.md SHP-26), built on the ShopifyAPI package.

ShopifyAPI keeps the active session in class state, so activate → execute → clear runs under one
process-wide lock. Two things are adapted, without touching the package's globals:

- the session's `site` honours `MBUZZ_SHOPIFY_OUTBOUND_BASE` (`{base}/{shop}/admin/api/{version}`): the
  package's `Session` only knows `https://{name}.myshopify.com`, so a small subclass overrides `site`, which is
  what `activate_session` hands to the resource classes and what `GraphQL` posts to;
- `GraphQL.execute` of the package opens the URL without a timeout and prints error bodies to stdout; since
  the lock is process-wide, one hung shop would stall every Admin call, so a subclass posts the same request
  with a 10 s timeout and no printing.

The wrapper parses the JSON, raises on `errors`, and retries `THROTTLED` up to 3 times after the delay the
cost data implies (at most 10 s), through an injectable `sleep`. REST Admin is never used.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import shopify

from connectors.shopify.config import shopify_settings
from connectors.shopify.outbound import TIMEOUT_S, TokenInvalid, fresh_access_token, outbound_url
from edge.services import AppServices

__all__ = ["AdminClient", "AdminError", "AdminThrottled", "AdminUnauthorized", "TokenInvalid", "admin_client",
           "throttle_delay"]

log = logging.getLogger("mbuzz.shopify")

_LOCK = threading.Lock()  # ShopifyAPI's session is class state: one activate-execute-clear at a time
MAX_RETRIES = 3
MAX_DELAY_S = 10.0


class AdminError(Exception):
    """An Admin GraphQL call failed; the message carries error codes and messages, never the token."""


class AdminThrottled(AdminError):
    """Still `THROTTLED` after the retries."""


class AdminUnauthorized(AdminError):
    """Shopify refused the access token (HTTP 401/403)."""


class _Session(shopify.Session):  # type: ignore[misc]
    """A ShopifyAPI session whose `site` goes through the outbound base when one is configured."""

    def __init__(self, shop: str, version: str, token: str, site: str) -> None:
        super().__init__(shop, version, token)
        self._outbound_site = site

    @property
    def site(self) -> str:
        return self._outbound_site


class _GraphQL(shopify.GraphQL):  # type: ignore[misc]
    """The package's GraphQL client (endpoint and headers from the active session) with a timeout."""

    def execute(self, query: str, variables: dict[str, Any] | None = None,
                operation_name: str | None = None) -> str:
        data = json.dumps({"query": query, "variables": variables, "operationName": operation_name}).encode()
        headers = self.merge_headers({"Accept": "application/json", "Content-Type": "application/json"},
                                     self.headers)
        req = urllib.request.Request(self.endpoint, data, headers, method="POST")
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            return str(resp.read().decode("utf-8"))


def throttle_delay(body: dict[str, Any]) -> float:
    """Seconds until the bucket holds the query's cost again (SHP-26), from `extensions.cost`; 1..10 s."""
    cost = (body.get("extensions") or {}).get("cost") or {}
    status = cost.get("throttleStatus") or {}
    try:
        needed = float(cost.get("requestedQueryCost") or 0) - float(status.get("currentlyAvailable") or 0)
        rate = float(status.get("restoreRate") or 0)
    except (TypeError, ValueError):
        return 1.0
    if rate <= 0:
        return 1.0
    return min(MAX_DELAY_S, max(needed / rate, 0.0)) or 0.5


def _throttled(errors: list[Any]) -> bool:
    return any(isinstance(e, dict) and (e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors)


def _describe(errors: list[Any]) -> str:
    parts = []
    for error in errors[:5]:
        if isinstance(error, dict):
            code = (error.get("extensions") or {}).get("code")
            parts.append(f"{code}: {error.get('message')}" if code else str(error.get("message")))
        else:
            parts.append(str(error))
    return "; ".join(parts)[:500]


class AdminClient:
    """`execute(query, variables)` against one shop's Admin GraphQL API (SHP-26).

    `token` is called before each HTTP attempt (so an expiring token is refreshed first, SHP-25);
    `on_unauthorized` runs when Shopify answers 401/403; `sleep` is injectable so tests do not wait.
    """

    def __init__(self, shop: str, api_version: str, token: Callable[[], str], *, outbound_base: str | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 on_unauthorized: Callable[[], None] | None = None) -> None:
        self.shop = shop
        self.api_version = api_version
        self._token = token
        self._site = outbound_url(_Base(outbound_base), shop, f"/admin/api/{api_version}")
        self._sleep = sleep
        self._on_unauthorized = on_unauthorized

    def _once(self, query: str, variables: dict[str, Any] | None) -> dict[str, Any]:
        token = self._token()
        with _LOCK:
            shopify.ShopifyResource.activate_session(_Session(self.shop, self.api_version, token, self._site))
            try:
                raw = _GraphQL().execute(query, variables)
            except urllib.error.HTTPError as exc:
                if exc.code in (401, 403):
                    raise AdminUnauthorized(f"{self.shop}: Admin API answered HTTP {exc.code}") from None
                if exc.code == 429:
                    return {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]}
                raise AdminError(f"{self.shop}: Admin API answered HTTP {exc.code}") from None
            except (urllib.error.URLError, OSError) as exc:
                raise AdminError(f"{self.shop}: Admin API unreachable ({type(exc).__name__})") from None
            finally:
                shopify.ShopifyResource.clear_session()
        try:
            body = json.loads(raw)
        except ValueError:
            raise AdminError(f"{self.shop}: Admin API answered something that is not JSON") from None
        if not isinstance(body, dict):
            raise AdminError(f"{self.shop}: Admin API answered a JSON {type(body).__name__}, not an object")
        return body

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `data` object of the answer; raises `AdminError` on `errors`, after THROTTLED retries."""
        attempt = 0
        while True:
            try:
                body = self._once(query, variables)
            except AdminUnauthorized:
                if self._on_unauthorized is not None:
                    self._on_unauthorized()
                raise
            errors = body.get("errors")
            if errors and isinstance(errors, list) and _throttled(errors) and attempt < MAX_RETRIES:
                attempt += 1
                delay = throttle_delay(body)
                log.info("%s: Admin API throttled; retry %d in %.1f s", self.shop, attempt, delay)
                self._sleep(delay)
                continue
            if errors:
                listed = errors if isinstance(errors, list) else [errors]
                kind = AdminThrottled if _throttled(listed) else AdminError
                raise kind(f"{self.shop}: {_describe(listed)}")
            data = body.get("data")
            return data if isinstance(data, dict) else {}


class _Base:
    """The one setting `outbound_url` reads, for a client built without the whole settings object."""

    def __init__(self, base: str | None) -> None:
        self.shopify_outbound_base = base


def admin_client(services: AppServices, installation_id: str, shop: str,
                 sleep: Callable[[float], None] = time.sleep) -> AdminClient:
    """The client for an installation: fresh token before each call (SHP-25), `invalid` on 401/403."""
    from core.storage.models import Installation

    def unauthorized() -> None:
        with services.sessions.begin() as db:
            installation = db.get(Installation, installation_id)
            if installation is not None:
                installation.token_status, installation.updated_at = "invalid", services.now()

    settings = shopify_settings(services)
    return AdminClient(shop, settings.shopify_api_version, lambda: fresh_access_token(services, installation_id),
                       outbound_base=settings.shopify_outbound_base, sleep=sleep, on_unauthorized=unauthorized)

