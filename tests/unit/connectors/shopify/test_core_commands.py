"""What the Web Pixel's envelopes mean as core commands (sessions.md SES-7), applied by the connector, not the
core's mapping (issue 18 item 2: core/envelope.py names no source)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from connectors.shopify.envelopes import WEB_PIXEL, envelope
from connectors.shopify.topics import core_commands
from core.commands import EventCommand, TouchCommand

NOW = datetime(2026, 5, 20, 3, 20, tzinfo=UTC)
PAGE = {"occurred_at": "2026-05-20T03:19:00Z", "visitor_id": "vis_1", "url": "https://shop.example/p/1",
        "referrer": "https://www.google.com/"}


def _pixel(kind: str, key: str, **fields: Any) -> dict[str, Any]:
    return envelope(kind, "acct_1", "live", "inst_1", key, source=WEB_PIXEL, **PAGE, **fields)


def test_SES7_a_pixel_session_has_no_session_id_of_its_own() -> None:
    [touch] = core_commands([_pixel("session", "shopify_pixel:inst_1:s1")], NOW)
    assert isinstance(touch, TouchCommand)
    assert touch.client_session_id is None  # resolved server-side
    assert touch.referrer == PAGE["referrer"]


def test_SES7_only_the_page_view_carries_the_pages_referrer() -> None:
    view, added = core_commands([_pixel("event", "k1", event_type="page_view"),
                                 _pixel("event", "k2", event_type="add_to_cart")], NOW)
    assert isinstance(view, EventCommand) and isinstance(added, EventCommand)
    assert view.referrer == PAGE["referrer"]
    assert added.referrer is None  # the same page: not new traffic


def test_other_sources_keep_their_session_id_and_referrers() -> None:
    session = {**_pixel("session", "sess-key"), "source": "sgtm"}
    event = {**_pixel("event", "k3", event_type="add_to_cart"), "source": "shopify_webhook"}
    touch, added = core_commands([session, event], NOW)
    assert isinstance(touch, TouchCommand) and isinstance(added, EventCommand)
    assert touch.client_session_id == "sess-key"
    assert added.referrer == PAGE["referrer"]
