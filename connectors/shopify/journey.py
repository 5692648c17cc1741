"""Step 7 of the linking chain (shopify.md SHP-56): Shopify's own journey summary of an order.

When nothing Multibuzz saw links an order to a visitor, Shopify may still know the first and last visit that
led to it (landing page, referrer, UTM parameters). Those visits become sessions of the order's synthetic
visitor (SHP-53), so the order is credited to the channels that brought the buyer instead of to nothing. The
step is opt-in (installation setting `journey_summary`): it costs an Admin API call per unlinked order.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from connectors.shopify.admin import AdminError, admin_client
from connectors.shopify.envelopes import rfc3339, source_time
from connectors.shopify.outbound import ShopifyHTTPError, TokenInvalid
from core.storage.models import Installation
from edge.services import AppServices

__all__ = ["JOURNEY_QUERY", "fetch_journey", "journey_sessions"]

log = logging.getLogger("mbuzz.shopify")

_VISIT = "occurredAt landingPage referrerUrl utmParameters { source medium campaign content term }"
JOURNEY_QUERY = (
    "query OrderJourney($id: ID!) { order(id: $id) { customerJourneySummary { ready "
    f"firstVisit {{ {_VISIT} }} lastVisit {{ {_VISIT} }} }} }} }}"
)
_UTM = ("source", "medium", "campaign", "content", "term")


def fetch_journey(services: AppServices, installation: Installation, order_id: str) -> dict[str, Any] | None:
    """The order's `customerJourneySummary` when it is ready; None on any failure, which falls through to step 8."""
    if installation.mode != "app" or not installation.access_token_enc:
        return None  # manual mode has no Admin API
    try:
        data = admin_client(services, installation.id, installation.shop_domain).execute(
            JOURNEY_QUERY, {"id": f"gid://shopify/Order/{order_id}"})
    except (AdminError, ShopifyHTTPError, TokenInvalid) as exc:
        log.warning("journey summary of order %s unavailable: %s", order_id, exc)
        return None
    summary = (data.get("order") or {}).get("customerJourneySummary")
    if not isinstance(summary, dict) or summary.get("ready") is not True:
        return None
    return summary


def _landing_url(visit: dict[str, Any]) -> str | None:
    """`landingPage` with the visit's UTM parameters added where the URL does not carry them already."""
    page = visit.get("landingPage")
    if not isinstance(page, str) or not page:
        return None
    parts = urlsplit(page)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {name for name, _ in query}
    given = visit.get("utmParameters")
    utm: dict[str, Any] = given if isinstance(given, dict) else {}
    query += [(f"utm_{name}", str(utm[name])) for name in _UTM
              if utm.get(name) and f"utm_{name}" not in present]
    return urlunsplit(parts._replace(query=urlencode(query)))


def journey_sessions(summary: dict[str, Any], order_key: str, visitor_id: str) -> list[dict[str, Any]]:
    """SHP-56: a session command (without its envelope) for the first visit and, when it happened at another
    time, the last one; empty when the summary has no usable visit."""
    visits: list[tuple[str, dict[str, Any], datetime]] = []
    first, last = summary.get("firstVisit"), summary.get("lastVisit")
    first_at = source_time(first.get("occurredAt")) if isinstance(first, dict) else None
    last_at = source_time(last.get("occurredAt")) if isinstance(last, dict) else None
    if isinstance(first, dict) and first_at is not None:
        visits.append(("first", first, first_at))
    if isinstance(last, dict) and last_at is not None and last_at != first_at:
        visits.append(("last", last, last_at))
    sessions = []
    for name, visit, at in visits:
        sessions.append({"kind": "session", "idempotency_key": f"{order_key}:journey:{name}",
                         "visitor_id": visitor_id, "occurred_at": rfc3339(at), "url": _landing_url(visit),
                         "referrer": visit.get("referrerUrl") or None, "synthetic": True})
    return sessions
