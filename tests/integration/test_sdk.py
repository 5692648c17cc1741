"""The published ``mbuzz`` Python SDK, unchanged, against a live server (issue 2, "Done when"; api.md §12)."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator

import mbuzz
import pytest
from flask import Flask
from mbuzz.config import config as sdk_config
from werkzeug.serving import make_server

from tests.conftest import AccountKeys


@pytest.fixture()
def live_url(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api/v1"
    finally:
        server.shutdown()


def test_python_sdk_tracks_converts_and_identifies(live_url: str, acct: AccountKeys) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mbuzz.init(api_key=acct.test_key)
        sdk_config.api_url = live_url
        visitor = "a" * 64
        tracked = mbuzz.track(
            event_type="page_view",
            visitor_id=visitor,
            properties={"url": "https://shop.example/?utm_source=google&utm_medium=cpc&utm_campaign=brand"},
            ip="203.0.113.9",
            user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0 Safari/537.36",
        )
        assert tracked.success and tracked.event_id and tracked.event_id.startswith("evt_")
        result = mbuzz.conversion("purchase", visitor_id=visitor, event_id=tracked.event_id, revenue=49.99,
                                  properties={"funnel": "purchase"})
        assert result.success and result.conversion_id and result.conversion_id.startswith("conv_")
        assert result.attribution is not None
        first = result.attribution["models"]["first_touch"]
        assert first[0]["channel"] == "paid_search" and first[0]["revenue_credit"] == "49.99"
        assert mbuzz.identify("user-42", visitor_id=visitor, traits={"email": "buyer@example.com", "plan": "pro"})
        again = mbuzz.conversion("renewal", user_id="user-42", revenue=10)
        assert again.success
        assert again.attribution is not None and again.attribution["sessions_analyzed"] == 1
